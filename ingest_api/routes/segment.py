"""Segment-spec endpoints: `POST /v1/batch` and `/v1/{track,identify,page,screen}`.

Messages are mapped onto `mobile/1` events (`ingest_api.segment`) and then take the path of
`/v1/events` (`ingest_api.intake`): the same validation, tokenization, landing, idempotency.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from ingest_api.deps import segment_intake
from ingest_api.intake import IDEMPOTENCY_PARAMETER, IngestRoute, ingest
from ingest_api.routes.events import ERRORS
from ingest_api.schemas import IngestReceipt
from ingest_api.segment import TYPES, batch_json_schema, message_json_schema, validate_segment

router = APIRouter(prefix="/v1", tags=["segment"], route_class=IngestRoute)

DESCRIPTION = """
Segment's HTTP tracking API, for Segment's libraries pointed at this host (`host=...`).
Authenticate as they do — HTTP Basic with the write key as user name and an empty password —
or with `Authorization: Bearer <key>`. Each message becomes a `mobile/1` event (mapping:
`ingest_api/segment.py` and ingest_api/README.md) and is validated, tokenized and landed exactly
like `/v1/events`; the answer is the same per-event receipt (202 when at least one event was
accepted, 422 when none). Segment's libraries count any 2xx as delivered and do not retry 422.
"""

_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"model": IngestReceipt, "description": "Landed: some or all events accepted"},
    422: {"model": IngestReceipt, "description": "Every event rejected and quarantined"},
    **ERRORS,
}


def _extra(body_schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "parameters": [IDEMPOTENCY_PARAMETER],
        "requestBody": {"required": True, "content": {"application/json": {"schema": body_schema}}},
    }


@router.post(
    "/batch",
    status_code=202,
    summary="Send a Segment batch",
    description=DESCRIPTION,
    responses=_RESPONSES,
    openapi_extra=_extra(batch_json_schema()),
)
async def post_batch(request: Request) -> Response:
    """Map a Segment batch onto `mobile/1` events, then land it like `/v1/events`."""
    return await _land(request)


def _single(message_type: str) -> Any:
    async def post_message(request: Request) -> Response:
        """Map one Segment message onto a `mobile/1` event, then land it like `/v1/events`."""
        return await _land(request, message_type=message_type)

    post_message.__name__ = f"post_{message_type}"
    return post_message


async def _land(request: Request, **options: Any) -> Response:
    intake = await segment_intake(request)  # awaited, not a dependency: see deps.write_intake
    validate = partial(
        validate_segment,
        settings=intake.settings,
        tokenizer=intake.tokenizer,
        source=intake.key.source,
        **options,
    )
    return await ingest(request, intake, validate=validate)


for _type in TYPES:
    router.add_api_route(
        f"/{_type}",
        _single(_type),
        methods=["POST"],
        status_code=202,
        summary=f"Send one Segment {_type} message",
        description=DESCRIPTION,
        responses=_RESPONSES,
        openapi_extra=_extra(message_json_schema(_type)),
    )
