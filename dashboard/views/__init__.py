"""One module per dashboard page; each exposes `render()`, which `dashboard.app` wires."""
