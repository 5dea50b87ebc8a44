"""The one path every ingest route takes: body, validation, idempotency, landing, receipt.

Routes differ only in how a decoded body becomes a `ValidatedBatch` (`/v1/events` reads our
envelope, the Segment routes map Segment messages first); reading with caps, gzip, the
Idempotency-Key, landing and the answer are the same for all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from functools import partial
from typing import Any, Protocol
from uuid import UUID, uuid4

from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from ingest_api import idempotency
from ingest_api.batches import ValidatedBatch
from ingest_api.body import BodyTimeouts, content_coding, decode_body, read_body
from ingest_api.deps import Intake
from ingest_api.errors import IdempotencyKeyInProgressError, ServiceUnavailableError
from ingest_api.groupcommit import GroupCommit
from ingest_api.landing import prepare, put_objects_async, register_async
from ingest_api.log import log_fields
from ingest_api.responses import JsonResponse
from lake_config.registry import AsyncRegistrar

REPLAYED_HEADER = "Idempotent-Replayed"
# OpenAPI description of the header (read by `ingest`, not by a FastAPI parameter).
IDEMPOTENCY_PARAMETER: dict[str, Any] = {
    "name": idempotency.HEADER,
    "in": "header",
    "required": False,
    "description": "Per source: a retry with the same key and body lands nothing new and gets "
    "the first answer again. 1-255 visible ASCII characters.",
    "schema": {"type": "string", "minLength": 1, "maxLength": idempotency.MAX_KEY_CHARS},
}


class IngestRoute(APIRoute):
    """The route class of the ingest routes: FastAPI documents them (OpenAPI), `edge.Edge`
    answers them with `endpoint(request) -> Response`, and so does FastAPI when its router
    matches them (under a `root_path`, or with its OpenTelemetry on).

    An ingest endpoint declares nothing for FastAPI to resolve: it reads its own body and key
    (`ingest`, `deps.write_intake`). FastAPI's handler would still solve an empty dependency
    graph and open its exit stacks per request: ~45 us of a 100-event request's ~1,650 in an
    interleaved in-process A/B (1,674 -> 1,629 us, and the same with a bare Starlette route).
    A parameter FastAPI would have to resolve is refused when the route is declared.
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        d = self.dependant
        params = (d.path_params, d.query_params, d.header_params, d.cookie_params, d.body_params)
        if d.request_param_name is None or d.dependencies or any(params):
            raise TypeError(f"{path}: an ingest endpoint takes only `request: Request`")

    def get_route_handler(self) -> Callable[[Any], Coroutine[Any, Any, Response]]:
        return self.endpoint


class Validate(Protocol):
    """How a route turns a decoded body into a batch, bounding event times by `received_at`."""

    def __call__(self, body: bytes, *, received_at: datetime) -> ValidatedBatch: ...


def receipt(batch: ValidatedBatch, batch_id: UUID, object_key: str | None) -> dict[str, Any]:
    """The answer body for a landed batch (JSON types only: it is also stored as jsonb)."""
    return {
        "batch_id": str(batch_id),
        "object_key": object_key,
        "accepted": len(batch.accepted),
        "rejected": len(batch.rejected),
        "results": batch.results,
    }


async def ingest(request: Request, intake: Intake, *, validate: Validate) -> Response:
    """Read, validate and land one request; 202 when an event was accepted, else 422."""
    key, settings, registry = intake.key, intake.settings, intake.registry
    received_at = datetime.now(UTC)
    idem_key = idempotency.parse_key(request.headers.get(idempotency.HEADER))
    coding = content_coding(request.headers.get("content-encoding"))
    timeouts = BodyTimeouts(settings.body_timeout_s, settings.body_total_timeout_s)
    raw = await read_body(request, settings.max_request_bytes, timeouts)
    log_fields(request)["bytes_in"] = len(raw)
    body = decode_body(raw, coding, settings.max_decompressed_bytes)
    batch = validate(body, received_at=received_at)
    request.app.state.rate_limiter.take(key.key_id, len(batch.results))

    owned: idempotency.Claim | None = None
    batch_id = uuid4()
    if idem_key is not None:
        outcome = await run_in_threadpool(
            partial(
                idempotency.claim,
                registry,
                source=key.source,
                key=idem_key,
                body_sha256=idempotency.fingerprint(body),
                received_at=received_at,
                ttl_hours=settings.idempotency_ttl_hours,
            )
        )
        if isinstance(outcome, idempotency.StoredAnswer):
            log_fields(request).update(
                batch_id=outcome.body.get("batch_id"), idempotent_replay=True
            )
            return JsonResponse(
                outcome.body, status_code=outcome.status_code, headers={REPLAYED_HEADER: "true"}
            )
        owned = outcome
        if owned.received_at != received_at:
            # A takeover lands at the first attempt's time, so it must also judge event times
            # against it: the objects it writes must be the very bytes the first would have.
            batch = validate(body, received_at=owned.received_at)
        batch_id, received_at = owned.batch_id, owned.received_at
    log_fields(request)["batch_id"] = str(batch_id)
    status = 202 if batch.accepted else 422
    if owned is None:
        # Landed with the worker's other batches of the moment (one object, one commit).
        committer: GroupCommit = request.app.state.committer
        landing = await committer.land(
            batch, batch_id=batch_id, source=key.source, received_at=received_at
        )
        answer = receipt(batch, batch_id, landing.object_key)
    else:
        answer = await _land_idempotent(request, intake, batch, owned, status)
    log_fields(request).update(accepted=len(batch.accepted), rejected=len(batch.rejected))
    request.app.state.metrics.observe_batch(
        len(batch.accepted), (r.reasons for r in batch.rejected)
    )
    return JsonResponse(answer, status_code=status)


async def _land_idempotent(
    request: Request,
    intake: Intake,
    batch: ValidatedBatch,
    owned: idempotency.Claim,
    status: int,
) -> dict[str, Any]:
    """Land an idempotent request alone, under its key's batch id: its objects are the same
    bytes on every attempt (PUT if absent), and its answer is stored in the registration's
    transaction. The claim is released when nothing was acknowledged."""
    # Serializing and gzipping is CPU work: done here on the loop, not in a thread (landing.py).
    prepared = prepare(
        batch, batch_id=owned.batch_id, source=intake.key.source, received_at=owned.received_at
    )
    answer = receipt(batch, owned.batch_id, prepared.landing.object_key)
    first = partial(idempotency.complete_async, owned=owned, status_code=status, body=answer)
    registrar: AsyncRegistrar = request.app.state.registrar
    try:
        await put_objects_async(intake.store, prepared, if_absent=True)
        await register_async(registrar, prepared, first=first)
    except ServiceUnavailableError:
        await run_in_threadpool(idempotency.release, intake.registry, owned)
        raise
    except idempotency.ClaimLostError as exc:
        raise IdempotencyKeyInProgressError(
            "a request with this Idempotency-Key is in progress; retry shortly"
        ) from exc
    return answer
