"""Errors raised by the tlake command line and its stack manager.

TlakeError
├── StackError                a local component could not be started, stopped or reached
├── SimulationError           the simulator could not deliver its events
│   └── BrokerUnavailableError  the MQTT broker refused the simulator or could not be reached
└── SimulatorConfigError      a simulator option or input file is invalid
"""

from __future__ import annotations


class TlakeError(Exception):
    """Root of every error the CLI raises; the CLI prints it and exits non-zero."""


class StackError(TlakeError):
    """A local component could not be started, stopped or reached."""


class SimulationError(TlakeError):
    """The simulator could not deliver its events after retries."""


class BrokerUnavailableError(SimulationError):
    """The MQTT broker refused the simulator's connection or publications, or was unreachable;
    messages published before it went away may or may not have reached it."""


class SimulatorConfigError(TlakeError):
    """A simulator option or input file (e.g. `--sensors-file`) is invalid; nothing was sent."""
