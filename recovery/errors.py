"""Errors raised by recovery.

RecoveryError
└── ReplayError      a replay could not land (storage or registry unavailable)

Storage and registry failures stay `lake_config` errors (StorageError, RegistryError): they are
already one family with one meaning, and the CLI reports both the same way.
"""

from __future__ import annotations


class RecoveryError(Exception):
    """Root of every error recovery raises."""


class ReplayError(RecoveryError):
    """A replay could not land its events; the rows it did not land stay not replayed."""
