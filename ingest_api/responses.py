"""JSON responses rendered with orjson (timestamps in UTC with a `Z` suffix)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse


class JsonResponse(JSONResponse):
    """`application/json` rendered by orjson; UUIDs and datetimes serialize natively."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_UTC_Z)
