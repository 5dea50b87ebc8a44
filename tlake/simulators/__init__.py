"""Simulated origin sources, each posting as a real client of its kind would.

| profile           | origin | schema    | sent through         | module            |
| ----------------- | ------ | --------- | -------------------- | ----------------- |
| `mobile`          | -      | mobile/1  | POST /v1/events      | `tlake.simulate`  |
| `atm-fleet`       | 000    | fleet/1   | POST /v1/events      | `fleet`           |
| `store-traffic`   | 001    | store/1   | POST /v1/events      | `stores`          |
| `iot-temperature` | 002    | iot/1     | MQTT, then the bridge| `iot`             |
| `stream`          | 004    | stream/1  | POST /v1/events      | `stream`          |

A profile module only generates events (seeded, on an accelerated clock); `batching` makes them
into the batches a client sends and `client` posts them. `profiles` wires a profile's options
to those. The mobile profile predates this package and keeps its module for its importers.
"""

from __future__ import annotations

from enum import StrEnum


class Profile(StrEnum):
    """The `--profile` of `tlake simulate`."""

    MOBILE = "mobile"
    ATM_FLEET = "atm-fleet"
    STORE_TRAFFIC = "store-traffic"
    IOT_TEMPERATURE = "iot-temperature"
    STREAM = "stream"
