"""Errors of the dashboard; pages show them in an error box instead of a stack trace.

DashboardError
├── DatabaseUnavailableError   PostgreSQL cannot be reached (down, wrong URL, refused)
└── QueryError                 reached, but a query failed (e.g. migrations not applied)
"""

from __future__ import annotations


class DashboardError(Exception):
    """Base of every error the dashboard raises."""


class DatabaseUnavailableError(DashboardError):
    """PostgreSQL cannot be reached with the configured `TLAKE_DATABASE_URL`."""


class QueryError(DashboardError):
    """A dashboard query failed on a reachable database."""
