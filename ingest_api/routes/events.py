"""`POST /v1/events`: a batch of device events in, one raw object and quarantine rows out."""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from ingest_api.batches import validate_batch
from ingest_api.deps import BEARER_SECURITY, write_intake
from ingest_api.intake import IDEMPOTENCY_PARAMETER, IngestRoute, ingest
from ingest_api.schemas import ErrorBody, IngestReceipt, envelope_json_schema

router = APIRouter(prefix="/v1", tags=["events"], route_class=IngestRoute)

DESCRIPTION = """
Validate a batch of events (schema `mobile/1` unless `schema_version` says otherwise; the body
may be gzip with `Content-Encoding: gzip`). Every valid event is written to one raw object and
registered before the answer; every invalid one is quarantined with its reasons.

* **202**: at least one event accepted; `results` gives each event's status and errors.
* **422**: no event accepted (all quarantined); `object_key` is null.
* `network.ip` and `network.ssid` are stored only as HMAC tokens.
* Two events with the same `event_id` in one batch are both accepted: deduplication by
  `event_id` happens downstream (silver), across batches.
* An event whose `occurred_at` (plus the device clock skew `received_at - sent_at`, when it
  exceeds `clock_skew_threshold_s`) lies more than `max_future_s` after its receipt is
  rejected with a reason on `occurred_at`.
* A 503 means nothing was acknowledged: retry the same batch after `Retry-After` seconds.
* With an `Idempotency-Key` header (1-255 visible ASCII, per source), a retry of the same body
  lands nothing new and gets the first answer again (`Idempotent-Replayed: true`); the same
  key with another body is 422 `idempotency_key_reused` (an error body, not a receipt), and
  while the first attempt is still being landed, 409 `idempotency_key_in_progress`. A key's
  record expires after `idempotency_ttl_hours` (24); the key may then be used again.
"""

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {
        "model": ErrorBody,
        "description": "invalid_json, invalid_envelope, invalid_encoding, invalid_idempotency_key",
    },
    401: {"model": ErrorBody, "description": "missing_api_key, invalid_api_key"},
    403: {"model": ErrorBody, "description": "insufficient_scope"},
    408: {
        "model": ErrorBody,
        "description": "body_timeout: the body stalled or arrived too slowly (`limit` names "
        "the setting); the connection is closed",
    },
    409: {"model": ErrorBody, "description": "idempotency_key_in_progress (with Retry-After)"},
    413: {"model": ErrorBody, "description": "payload_too_large (`limit` names the setting)"},
    415: {"model": ErrorBody, "description": "unsupported_content_encoding"},
    429: {"model": ErrorBody, "description": "rate_limited (with Retry-After)"},
    503: {
        "model": ErrorBody,
        "description": "storage_unavailable, registry_unavailable, overloaded (with Retry-After)",
    },
}


@router.post(
    "/events",
    status_code=202,
    summary="Send a batch of events",
    description=DESCRIPTION,
    responses={
        202: {"model": IngestReceipt, "description": "Landed: some or all events accepted"},
        422: {"model": IngestReceipt, "description": "Every event rejected and quarantined"},
        **ERRORS,
    },
    openapi_extra={
        **BEARER_SECURITY,
        "parameters": [IDEMPOTENCY_PARAMETER],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": envelope_json_schema()}},
        },
    },
)
async def post_events(request: Request) -> Response:
    """Validate a batch, land the accepted events as one raw object and quarantine the rest."""
    intake = await write_intake(request)
    return await ingest(
        request,
        intake,
        validate=partial(validate_batch, settings=intake.settings, tokenizer=intake.tokenizer),
    )
