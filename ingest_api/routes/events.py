"""`POST /v1/events`: a batch of device events in, one raw object and quarantine rows out."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from ingest_api.batches import validate_batch
from ingest_api.body import content_coding, decode_body, read_body
from ingest_api.deps import ObjectStoreDep, RegistryDep, SettingsDep, TokenizerDep, WriteKeyDep
from ingest_api.landing import land
from ingest_api.log import log_fields
from ingest_api.responses import JsonResponse
from ingest_api.schemas import ErrorBody, IngestReceipt, envelope_json_schema

router = APIRouter(prefix="/v1", tags=["events"])

DESCRIPTION = """
Validate a batch of events (schema `mobile/1` unless `schema_version` says otherwise; the body
may be gzip with `Content-Encoding: gzip`). Every valid event is written to one raw object and
registered before the answer; every invalid one is quarantined with its reasons.

* **202**: at least one event accepted; `results` gives each event's status and errors.
* **422**: no event accepted (all quarantined); `object_key` is null.
* `network.ip` and `network.ssid` are stored only as HMAC tokens.
* Two events with the same `event_id` in one batch are both accepted: deduplication by
  `event_id` happens downstream (silver), across batches.
* A 503 means nothing was acknowledged: retry the same batch after `Retry-After` seconds.
"""

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "invalid_json, invalid_envelope, invalid_encoding"},
    401: {"model": ErrorBody, "description": "missing_api_key, invalid_api_key"},
    403: {"model": ErrorBody, "description": "insufficient_scope"},
    413: {"model": ErrorBody, "description": "payload_too_large (`limit` names the setting)"},
    415: {"model": ErrorBody, "description": "unsupported_content_encoding"},
    503: {"model": ErrorBody, "description": "storage_unavailable, registry_unavailable"},
}


@router.post(
    "/events",
    status_code=202,
    summary="Send a batch of events",
    description=DESCRIPTION,
    responses={
        202: {"model": IngestReceipt, "description": "Landed: some or all events accepted"},
        422: {"model": IngestReceipt, "description": "Every event rejected and quarantined"},
        **_ERRORS,
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": envelope_json_schema()}},
        }
    },
)
async def post_events(
    request: Request,
    key: WriteKeyDep,
    settings: SettingsDep,
    store: ObjectStoreDep,
    registry: RegistryDep,
    tokenizer: TokenizerDep,
) -> Response:
    """Validate a batch, land the accepted events as one raw object and quarantine the rest."""
    received_at = datetime.now(UTC)
    coding = content_coding(request.headers.get("content-encoding"))
    raw = await read_body(request, settings.max_request_bytes)
    batch = validate_batch(
        decode_body(raw, coding, settings.max_decompressed_bytes), settings, tokenizer
    )
    batch_id = uuid4()
    log_fields(request)["batch_id"] = str(batch_id)
    landing = await run_in_threadpool(
        land, store, registry, batch, batch_id=batch_id, source=key.source, received_at=received_at
    )
    log_fields(request).update(accepted=landing.accepted, rejected=landing.rejected)
    receipt = {
        "batch_id": batch_id,
        "object_key": landing.object_key,
        "accepted": landing.accepted,
        "rejected": landing.rejected,
        "results": batch.results,
    }
    return JsonResponse(receipt, status_code=202 if landing.accepted else 422)
