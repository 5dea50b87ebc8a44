"""Errors raised by the tlake command line and its stack manager.

TlakeError
├── StackError       a local component could not be started, stopped or reached
└── SimulationError  the simulator could not deliver its events
"""

from __future__ import annotations


class TlakeError(Exception):
    """Root of every error the CLI raises; the CLI prints it and exits non-zero."""


class StackError(TlakeError):
    """A local component could not be started, stopped or reached."""


class SimulationError(TlakeError):
    """The simulator could not deliver its events after retries."""
