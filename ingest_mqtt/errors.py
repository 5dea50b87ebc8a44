"""Errors raised by ingest_mqtt.

BridgeError
├── BrokerError      the broker refused us or could not be reached (connect, subscribe)
└── LandingError     a micro-batch could not land; its messages were not acknowledged

An invalid message is not an error: it is quarantined with its reasons, like an invalid event
sent over HTTP, and acknowledged once the quarantine row is registered.
"""

from __future__ import annotations


class BridgeError(Exception):
    """Root of every error the MQTT bridge raises."""


class BrokerError(BridgeError):
    """The MQTT broker refused the connection or subscription, or could not be reached."""


class LandingError(BridgeError):
    """Landing a micro-batch failed; none of its messages was acknowledged (the broker
    redelivers them to the next session with the same client id)."""
