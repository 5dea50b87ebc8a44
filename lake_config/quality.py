"""Data-quality expectations, declared once per lake table (re-exported by lake_config.tables).

An expectation names a rule — the name quarantine.events and analytics.dq_results carry — and
says what a row must satisfy (its kind, on one column), which quality dimension that measures,
and what happens to a row that fails it:

- `warn`: the row is kept; the failure is only counted in analytics.dq_results.
- `quarantine`: the row goes to quarantine.events with the rule's name, never into the table.
- `fail`: the stage stops before its commit, the run fails and its claims are released.

Kinds: `not_null` (blank text counts as missing), `parseable` (`source` text is present but did
not parse into `column`), `range` (`minimum`..`maximum`, inclusive), `allowed_values`,
`unique` (a later copy of the same value in one input fails; `order_by` says which is first),
`freshness` (`column` at most `max_age_hours` before `reference`). A null passes every kind but
`not_null`. `when` names a boolean column: only rows where it holds are checked. `message`
may contain `{value}` (the failing value as text); `label` is the field as clients know it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["not_null", "parseable", "range", "allowed_values", "unique", "freshness"]
Action = Literal["warn", "quarantine", "fail"]
Dimension = Literal[
    "completeness", "validity", "consistency", "timeliness", "uniqueness", "integrity"
]
ACTIONS: tuple[Action, ...] = ("warn", "quarantine", "fail")


@dataclass(frozen=True)
class Expectation:
    rule: str
    kind: Kind
    column: str
    dimension: Dimension
    action: Action = "quarantine"
    label: str = ""
    message: str = ""
    when: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    values: tuple[str, ...] = ()
    source: str | None = None
    reference: str | None = None
    max_age_hours: float | None = None
    order_by: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        needs = {
            "parseable": self.source is not None,
            "range": self.minimum is not None or self.maximum is not None,
            "allowed_values": bool(self.values),
            "unique": bool(self.order_by),
            "freshness": self.reference is not None and self.max_age_hours is not None,
        }
        if not needs.get(self.kind, True):
            raise ValueError(f"expectation {self.rule!r} of kind {self.kind} is incomplete")
        if self.action not in ACTIONS:
            raise ValueError(f"expectation {self.rule!r}: unknown action {self.action!r}")

    @property
    def field(self) -> str:
        return self.label or self.column

    @property
    def reason(self) -> str:
        """The quarantine reason, with `{value}` where the failing value goes."""
        if self.message:
            return self.message
        if self.kind == "not_null":
            return f"{self.field} is missing"
        if self.kind == "parseable":
            return f"{self.field} {{value}} does not parse"
        if self.kind == "range":
            low = "" if self.minimum is None else f"{self.minimum:g}"
            high = "" if self.maximum is None else f"{self.maximum:g}"
            return f"{self.field} {{value}} outside {low}..{high}"
        if self.kind == "allowed_values":
            return f"{self.field} {{value}} is not one of {', '.join(self.values)}"
        if self.kind == "unique":
            return f"{self.field} {{value}} appeared before in the same input"
        return (
            f"{self.field} {{value}} is more than {self.max_age_hours:g} h before {self.reference}"
        )


# silver.device_events: checked on the flattened bronze rows (spark_jobs.silver.device_events).
# Rules that quarantine keep the names quarantine.events has always carried.
SILVER_DEVICE_EVENTS_EXPECTATIONS: tuple[Expectation, ...] = (
    Expectation(
        "unparseable_payload",
        "parseable",
        "object_payload",
        "validity",
        source="payload",
        message="payload is not a JSON object",
    ),
    *(
        Expectation(f"missing_{name}", "not_null", name, "completeness", when="is_object")
        for name in ("event_id", "device_id", "event_type")
    ),
    Expectation(
        "missing_occurred_at",
        "not_null",
        "occurred_at_text",
        "completeness",
        label="occurred_at",
        when="is_object",
    ),
    Expectation(
        "invalid_occurred_at",
        "parseable",
        "occurred_at",
        "validity",
        source="occurred_at_text",
        message="occurred_at {value} is not an RFC 3339 timestamp",
    ),
    Expectation(
        "battery_out_of_range",
        "range",
        "battery_pct",
        "validity",
        label="battery.level_pct",
        minimum=0.0,
        maximum=100.0,
    ),
    Expectation(
        "signal_out_of_range",
        "range",
        "network_signal_dbm",
        "validity",
        label="network.signal_dbm",
        minimum=-150,
        maximum=0,
    ),
    Expectation(
        "unknown_network_type",
        "allowed_values",
        "network_type",
        "validity",
        label="network.type",
        values=("wifi", "cellular", "ethernet", "none"),
    ),
    # A device clock up to 5 minutes fast is normal; beyond that occurred_at is suspect.
    Expectation(
        "occurred_after_received",
        "range",
        "ingest_lag_ms",
        "consistency",
        action="warn",
        label="received_at - occurred_at (ms)",
        minimum=-300_000,
    ),
    Expectation(
        "stale_event",
        "freshness",
        "occurred_at",
        "timeliness",
        action="warn",
        reference="received_at",
        max_age_hours=24 * 30,
    ),
    # Re-sent copies are expected (silver keeps the first); counted to watch retry rates.
    Expectation(
        "duplicate_event_id",
        "unique",
        "event_id",
        "uniqueness",
        action="warn",
        order_by=("received_at", "object_key", "line_no"),
    ),
)


# --- run checks: after the silver commit, before gold ------------------------------------------


@dataclass(frozen=True)
class RunCheck:
    """A rule over what a run committed, checked by the `quality` stage (spark_jobs.checks).

    Row expectations judge one row before its stage commits; a run check compares tables after
    the silver commit: that nothing the run accepted is missing, that references resolve. It
    counts rows checked and failed into analytics.dq_results like an expectation; `fail` stops
    the run before gold (its claims are released and the next run redoes it), `warn` only
    counts. `quarantine` has no meaning here: the rows are already committed.
    """

    rule: str
    table: str
    dimension: Dimension
    action: Literal["warn", "fail"]
    description: str


RUN_CHECKS: tuple[RunCheck, ...] = (
    RunCheck(
        "silver_holds_accepted",
        "silver.device_events",
        "integrity",
        "fail",
        "every event of the run that passed the row rules is in silver.device_events "
        "(this copy or an earlier one): nothing the run accepted was lost",
    ),
    RunCheck(
        "quarantine_holds_rejected",
        "quarantine.events",
        "integrity",
        "fail",
        "every line of the run that broke a quarantining rule is in quarantine.events "
        "under that rule",
    ),
    RunCheck(
        "source_table_complete",
        "silver.device_events",
        "consistency",
        "fail",
        "every event of an origin source that the run put in silver.device_events is in that "
        "source's own silver table too",
    ),
    RunCheck(
        "heartbeat_device_inventoried",
        "silver.fleet_status",
        "integrity",
        "warn",
        "referential: a fleet heartbeat comes from a machine with an inventory record "
        "(in the same run, or already in gold.fleet_devices.inventoried_at)",
    ),
)
