"""The Streamlit dashboard (`make dashboard`): reads PostgreSQL's `analytics` and `registry`
schemas only, never the lake, so it shows exactly what SQL users and operators see."""
