"""`GET /v1/catalog` (JSON, read key) and `GET /catalog` (HTML page, key optional).

The HTML page is public so a browser can open it (origin 002 served a browsable catalog), but
without a key it shows schemas only, no row counts or freshness, and reads no Delta log: a key
in a URL would end up in logs and browser history, and an anonymous page should not make the
API read the whole lake. Sent with `Authorization: Bearer <read key>` it shows statistics too.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse

from ingest_api import catalog
from ingest_api.deps import AnalyticsDbDep, OptionalReadKeyDep, ReadKeyDep, SettingsDep
from ingest_api.read_schemas import Catalog
from ingest_api.readparams import ReadRoute, reject_unknown
from ingest_api.routes.read import ERRORS

router = APIRouter(tags=["catalog"], route_class=ReadRoute)
# The page's only style is inline; nothing else may load, and nothing runs.
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
}


@router.get(
    "/v1/catalog",
    summary="Every lake table and analytics relation with schema, row count and freshness",
    response_model=Catalog,
    responses=ERRORS,
)
async def get_catalog(
    request: Request, key: ReadKeyDep, settings: SettingsDep, db: AnalyticsDbDep
) -> Catalog:
    """The catalog generated from the table declarations, with statistics."""
    reject_unknown(request, ())
    return await catalog.build(settings, db, statistics=True)


@router.get(
    "/catalog",
    summary="The catalog as an HTML page (schemas; statistics with a read key)",
    response_class=HTMLResponse,
    responses={
        200: {"content": {"text/html": {}}, "description": "The page"},
        401: ERRORS[401],
        403: ERRORS[403],
        503: ERRORS[503],
        "4XX": ERRORS["4XX"],
    },
)
async def catalog_page(
    key: OptionalReadKeyDep, settings: SettingsDep, db: AnalyticsDbDep
) -> HTMLResponse:
    """Render the catalog as plain HTML; row counts and freshness only for a read key."""
    page = await catalog.build(settings, db, statistics=key is not None)
    return HTMLResponse(catalog.render_html(page), headers=_PAGE_HEADERS)
