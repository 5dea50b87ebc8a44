"""The ingest quarantine: list it, and replay what today's schema accepts.

A replay takes the quarantined events not replayed yet, batch by batch (the original batch id,
source and received_at), validates their payloads with today's `mobile/1` schema through
`ingest_api.batches.validate_events`, and lands the events that now pass with
`ingest_api.landing.land` — the same raw object format and registry row as the API — marking their
quarantine rows `replayed_at` / `replayed_object_key` in the very transaction that registers the
object. Events that still fail stay quarantined, untouched.

Replaying twice adds nothing: replayed rows are skipped, and the object of a replay is keyed by a
batch id derived from its quarantine ids, PUT only if absent, so a replay that crashed between
its PUT and its registration rebuilds the same bytes at the same key when it runs again.

Payloads are stored tokenized: `network.ip` / `network.ssid` hold `"<key_id>:<hex>"` tokens,
which are longer than the schema allows for a raw value. They are swapped for short placeholders
while validating and put back afterwards, never tokenized a second time; a value there that is
not a token (a row written by something that did not tokenize) is tokenized as the API would.
An event rejected FOR a sensitive field is not replayable: its original value is gone, and the
token would hide whatever was wrong with it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

import orjson
import psycopg

from ingest_api.batches import ValidatedBatch, validate_events
from ingest_api.errors import ServiceUnavailableError
from ingest_api.landing import land, raw_key
from ingest_api.schemas import DEFAULT_SCHEMA_VERSION, SCHEMAS
from ingest_api.tokenize import Tokenizer
from lake_config.registry import Registry
from lake_config.settings import Settings
from lake_config.storage import ObjectStore
from recovery.errors import ReplayError

PAGE_ROWS = 1_000
_TOKEN = re.compile(r"[^:\s]{1,32}:[0-9a-f]{64}\Z")
_PLACEHOLDER = "replay-token-{}"


@dataclass(frozen=True)
class QuarantinedEvent:
    """One row of registry.quarantine."""

    quarantine_id: int
    batch_id: UUID
    source: str
    event_index: int
    event_id: str | None
    component: str
    reasons: Any
    payload: Any
    payload_text: str | None
    received_at: datetime
    replayed_at: datetime | None
    replayed_object_key: str | None


@dataclass
class ReplayResult:
    """What one replay did (or, with dry_run, would do)."""

    dry_run: bool
    replayed: int = 0
    objects: list[str] = field(default_factory=list)
    still_invalid: int = 0
    not_replayable: dict[int, str] = field(default_factory=dict)

    def render(self) -> str:
        verb = "would replay" if self.dry_run else "replayed"
        return (
            f"quarantine replay: {verb} {self.replayed} event(s) into {len(self.objects)} "
            f"object(s); {self.still_invalid} still invalid; "
            f"{len(self.not_replayable)} not replayable"
        )


# --- listing ----------------------------------------------------------------------------------

_COLUMNS = """
    quarantine_id, batch_id, source, event_index, event_id, component, reasons, payload,
    payload_text, received_at, replayed_at, replayed_object_key
"""


def list_quarantine(
    registry: Registry,
    *,
    reason: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
) -> list[QuarantinedEvent]:
    """Quarantined events, newest first. `reason` matches (case-insensitive substring) any
    reason's field or message; `since` keeps events received at or after it."""
    pattern = None if reason is None else "%" + _like_escape(reason) + "%"
    with registry.connection() as conn:
        rows = conn.execute(
            f"""
            select {_COLUMNS}
            from registry.quarantine as q
            where (%(since)s::timestamptz is null or q.received_at >= %(since)s)
              and (%(pattern)s::text is null or exists (
                    select 1
                    from jsonb_array_elements(
                        case jsonb_typeof(q.reasons) when 'array' then q.reasons
                        else '[]'::jsonb end) as r
                    where r ->> 'field' ilike %(pattern)s or r ->> 'message' ilike %(pattern)s))
            order by q.received_at desc, q.quarantine_id desc
            limit %(limit)s
            """,
            {"since": since, "pattern": pattern, "limit": limit},
        ).fetchall()
    return [QuarantinedEvent(**r) for r in rows]


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# --- replay: pure part ------------------------------------------------------------------------


def replay_batch_id(quarantine_ids: Sequence[int]) -> UUID:
    """The batch id of the replay of exactly these rows: the same rows, the same object key."""
    return uuid5(NAMESPACE_URL, "tlake-replay:" + ",".join(map(str, sorted(quarantine_ids))))


def not_replayable(row: QuarantinedEvent, sensitive: Sequence[tuple[str, str]]) -> str | None:
    """Why `row` cannot be replayed, or None when it can be validated again."""
    if row.payload is None and row.payload_text is None:
        return "its payload was not kept"
    if row.payload is None:
        try:  # a payload holding U+0000 is kept as text (jsonb refuses it)
            orjson.loads(row.payload_text or "")
        except orjson.JSONDecodeError:
            return "its payload_text is not JSON"
    fields = {f"{section}.{name}" for section, name in sensitive}
    reasons = row.reasons if isinstance(row.reasons, list) else []
    for r in reasons:
        name = r.get("field") if isinstance(r, dict) else None
        if isinstance(name, str) and any(name == f or name.startswith(f + ".") for f in fields):
            return f"rejected for {name}, a tokenized field: the original value is gone"
    return None


def with_placeholders(
    payload: Any, sensitive: Sequence[tuple[str, str]], tokens: dict[str, str]
) -> Any:
    """A copy of `payload` with each token at a sensitive field swapped for a short placeholder
    (recorded in `tokens`, placeholder -> token), so the schema's length bound can check it."""
    if not isinstance(payload, dict):
        return payload
    out = dict(payload)
    for section_name, name in sensitive:
        section = out.get(section_name)
        if isinstance(section, dict) and isinstance(section.get(name), str):
            value = section[name]
            if _TOKEN.match(value):
                placeholder = _PLACEHOLDER.format(len(tokens))
                tokens[placeholder] = value
                out[section_name] = section = {**section, name: placeholder}
    return out


class KeptTokens(Tokenizer):
    """A tokenizer for payloads that are tokenized already: placeholders become their original
    tokens again, and only a value that is not a token yet is tokenized (by `real`)."""

    def __init__(self, real: Tokenizer, tokens: dict[str, str]) -> None:
        self._real = real
        self._tokens = tokens
        self.key_id = real.key_id

    def token(self, value: str) -> str:
        return self._tokens.get(value) or self._real.token(value)

    def tokenize_event(
        self,
        event: dict[str, Any],
        fields: Sequence[tuple[str, str]] = (),
        memo: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        # Today's policy still applies: a kept token is dropped under `drop`, and a value that is
        # not a token is handled as the API would (`truncate_ip` may reject the event).
        for section_name, name in fields:
            section = event.get(section_name)
            if not isinstance(section, dict) or section.get(name) is None:
                continue
            if self._real.policy(section_name, name) == "drop":
                del section[name]
            elif section[name] in self._tokens:
                section[name] = self._tokens[section[name]]
            else:
                self._real.tokenize_event(event, [(section_name, name)])
        return event

    def tokenize_payload(self, payload: Any, fields: Sequence[tuple[str, str]] = ()) -> Any:
        # Only rejections call this, and a replay writes no rejection: nothing to tokenize.
        return payload


def validate_again(
    rows: Sequence[QuarantinedEvent], tokenizer: Tokenizer, *, max_event_bytes: int
) -> tuple[ValidatedBatch, list[QuarantinedEvent]]:
    """Validate the payloads of one original batch with today's schema; the batch of those that
    pass (nothing rejected in it) and the rows they came from, in the same order."""
    schema = SCHEMAS[DEFAULT_SCHEMA_VERSION]
    tokens: dict[str, str] = {}
    events = [with_placeholders(_payload(r), schema.sensitive_fields, tokens) for r in rows]
    envelope = {"sent_at": None, "schema_version": schema.version, "events": events}
    batch = validate_events(
        envelope, schema, KeptTokens(tokenizer, tokens), max_event_bytes=max_event_bytes
    )
    passed = [rows[res["index"]] for res in batch.results if res["status"] == "accepted"]
    batch.rejected = []
    batch.results = [res for res in batch.results if res["status"] == "accepted"]
    return batch, passed


def _payload(row: QuarantinedEvent) -> Any:
    """The payload as stored (checked to parse by `not_replayable`)."""
    return row.payload if row.payload is not None else orjson.loads(row.payload_text or "null")


# --- replay: I/O ------------------------------------------------------------------------------


def replay(
    settings: Settings,
    store: ObjectStore,
    registry: Registry,
    *,
    dry_run: bool = False,
) -> ReplayResult:
    """Land every not-yet-replayed quarantined event that today's schema accepts (see module
    docstring). Raises ReplayError when landing fails; rows landed before stay replayed."""
    tokenizer = Tokenizer.for_settings(settings)
    sensitive = SCHEMAS[DEFAULT_SCHEMA_VERSION].sensitive_fields
    result = ReplayResult(dry_run=dry_run)
    for group in _batches(registry):
        candidates = []
        for row in group:
            why = not_replayable(row, sensitive)
            if why is None:
                candidates.append(row)
            else:
                result.not_replayable[row.quarantine_id] = why
        if not candidates:
            continue
        batch, passed = validate_again(
            candidates, tokenizer, max_event_bytes=settings.max_event_bytes
        )
        result.still_invalid += len(candidates) - len(passed)
        if not passed:
            continue
        head = passed[0]
        ids = [r.quarantine_id for r in passed]
        object_key = raw_key(head.source, head.received_at, replay_batch_id(ids))
        result.replayed += len(passed)
        if dry_run:
            result.objects.append(object_key)
            continue
        try:
            landing = land(
                store,
                registry,
                batch,
                batch_id=replay_batch_id(ids),
                source=head.source,
                received_at=head.received_at,
                if_absent=True,
                first=partial(_mark_replayed, ids=ids, object_key=object_key),
            )
        except ServiceUnavailableError as exc:
            raise ReplayError(
                f"replay of quarantine rows {ids[0]}..{ids[-1]} could not land: {exc.message}"
            ) from exc
        if landing.object_key:
            result.objects.append(landing.object_key)
    return result


def _batches(registry: Registry) -> Iterator[list[QuarantinedEvent]]:
    """Rows not replayed yet, a page at a time, grouped by original batch (and source)."""
    after = 0
    while True:
        with registry.connection() as conn:
            rows = conn.execute(
                f"""
                select {_COLUMNS}
                from registry.quarantine
                where replayed_at is null and quarantine_id > %s
                order by quarantine_id
                limit %s
                """,
                (after, PAGE_ROWS),
            ).fetchall()
        if not rows:
            return
        after = rows[-1]["quarantine_id"]
        groups: dict[tuple[UUID, str, datetime], list[QuarantinedEvent]] = {}
        for r in rows:
            event = QuarantinedEvent(**r)
            groups.setdefault((event.batch_id, event.source, event.received_at), []).append(event)
        yield from groups.values()
        if len(rows) < PAGE_ROWS:
            return


def _mark_replayed(conn: psycopg.Connection[Any], ids: Sequence[int], object_key: str) -> None:
    conn.execute(
        """
        update registry.quarantine
        set replayed_at = now(), replayed_object_key = %s
        where quarantine_id = any(%s) and replayed_at is null
        """,
        (object_key, list(ids)),
    )
