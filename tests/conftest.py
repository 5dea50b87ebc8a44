"""Shared fixtures. Integration fixtures live in tests/integration/conftest.py."""

from __future__ import annotations

import os

# Test runs never read a developer's .env or write into the repo's .tlake/.
os.environ.setdefault("TLAKE_ENV", "test")
