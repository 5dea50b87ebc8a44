"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from ingest_api.deps import ObjectStoreDep, RegistryDep
from ingest_api.responses import JsonResponse
from lake_config.errors import LakeConfigError

router = APIRouter(tags=["health"])
logger = logging.getLogger(__name__)
RETRY_AFTER_S = "5"


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    """Answer 200 while the process runs; checks no dependency."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Object storage and the registry answer",
    responses={503: {"description": "A dependency failed; `checks` names which"}},
)
async def readyz(store: ObjectStoreDep, registry: RegistryDep) -> Response:
    """Answer 200 when the bucket and PostgreSQL both answer, else 503 naming the failed ones."""
    storage, registry_ok = await asyncio.gather(_check(store.ping), _check(registry.ping))
    checks = {"storage": storage, "registry": registry_ok}
    failed = [name for name, state in checks.items() if state != "ok"]
    if not failed:
        return JsonResponse({"status": "ready", "checks": checks})
    return JsonResponse(
        {
            "status": "unavailable",
            "checks": checks,
            "error": {"code": "not_ready", "message": f"unavailable: {', '.join(failed)}"},
        },
        status_code=503,
        headers={"Retry-After": RETRY_AFTER_S},
    )


async def _check(ping: Callable[[], None]) -> str:
    try:
        await run_in_threadpool(ping)
    except LakeConfigError as exc:
        # Connection failures only (no request data involved), so the text is safe to log.
        logger.warning("readiness check failed", extra={"fields": {"reason": str(exc)}})
        return "unavailable"
    return "ok"
