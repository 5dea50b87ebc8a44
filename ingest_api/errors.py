"""Errors raised by ingest_api; each one is an HTTP answer with a machine-readable code.

    IngestError                          (status, code)
    ├── AuthenticationError              401
    │   ├── MissingApiKeyError               missing_api_key
    │   └── InvalidApiKeyError               invalid_api_key
    ├── InsufficientScopeError           403 insufficient_scope
    ├── BadRequestError                  400
    │   ├── InvalidEncodingError             invalid_encoding
    │   ├── InvalidJsonError                 invalid_json
    │   ├── InvalidIdempotencyKeyError       invalid_idempotency_key
    │   ├── InvalidEnvelopeError             invalid_envelope (with the field errors)
    │   │   └── UnsupportedSchemaVersionError    unsupported_schema_version
    │   └── InvalidParameterError            invalid_parameter (read API; `parameter` names it)
    │       ├── UnknownParameterError            unknown_parameter (with the `allowed` ones)
    │       ├── UnknownDatasetError              unknown_dataset (with the `known` ones)
    │       ├── UnknownSourceError               unknown_source (with the `known` ones)
    │       ├── UnknownTableError                unknown_table (with the `known` ones)
    │       ├── UnknownFilterError               unknown_filter (with the dataset's `filters`)
    │       ├── InvalidFilterError               invalid_filter
    │       ├── InvalidTimestampError            invalid_timestamp
    │       ├── InvalidRangeError                invalid_range (start after end)
    │       ├── InvalidLimitError                invalid_limit
    │       └── InvalidCursorError               invalid_cursor
    ├── BodyTimeoutError                 408 body_timeout (with the limit exceeded)
    ├── PayloadTooLargeError             413 payload_too_large (with the limit exceeded)
    ├── UnsupportedEncodingError         415 unsupported_content_encoding
    ├── IdempotencyKeyInProgressError    409 idempotency_key_in_progress (with Retry-After)
    ├── IdempotencyKeyReusedError        422 idempotency_key_reused
    ├── RateLimitedError                 429 rate_limited (with Retry-After)
    └── ServiceUnavailableError          503 (with Retry-After)
        ├── StorageUnavailableError          storage_unavailable
        ├── RegistryUnavailableError         registry_unavailable
        ├── LakeUnavailableError             lake_unavailable (a Delta table could not be read)
        ├── QueryTimeoutError                query_timeout (a read query ran out of time)
        └── OverloadedError                  overloaded

A batch in which every event is invalid is not an error: it is answered 422 with per-event
results, like any other batch. `lake_config` errors are turned into the 503 family where the
ingest API calls object storage or the registry (`raise ... from exc`), and
`handle_ingest_error` is the one place that turns this family into HTTP responses.

Messages never contain a value from the request body: they name fields and limits only.
"""

from __future__ import annotations

from typing import Any, ClassVar

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from ingest_api.log import log_fields
from ingest_api.responses import JsonResponse


class IngestError(Exception):
    """Root of every error the ingest API answers with; `status` and `code` name the answer."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    headers: ClassVar[dict[str, str]] = {}

    def __init__(self, message: str, *, cause: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.cause = cause  # for the request log only, never sent to the client

    def body(self) -> dict[str, Any]:
        """The JSON error body: `{"error": {"code", "message", ...details}}`."""
        return {"error": {"code": self.code, "message": self.message, **self.details}}


class AuthenticationError(IngestError):
    """No usable API key: the client must authenticate (401)."""

    status = 401
    headers: ClassVar[dict[str, str]] = {"WWW-Authenticate": "Bearer"}


class MissingApiKeyError(AuthenticationError):
    code = "missing_api_key"


class InvalidApiKeyError(AuthenticationError):
    code = "invalid_api_key"


class InsufficientScopeError(IngestError):
    """A live key whose scope does not allow the operation (403)."""

    status = 403
    code = "insufficient_scope"


class BadRequestError(IngestError):
    """The request body cannot be read as a batch (400)."""

    status = 400
    code = "bad_request"


class InvalidEncodingError(BadRequestError):
    code = "invalid_encoding"


class InvalidJsonError(BadRequestError):
    code = "invalid_json"


class InvalidEnvelopeError(BadRequestError):
    """JSON, but not the batch envelope; `details["errors"]` lists `{field, message}`."""

    code = "invalid_envelope"


class UnsupportedSchemaVersionError(InvalidEnvelopeError):
    code = "unsupported_schema_version"


class InvalidIdempotencyKeyError(BadRequestError):
    code = "invalid_idempotency_key"


class BodyTimeoutError(IngestError):
    """The request body stalled or arrived too slowly; `details["limit"]` names the setting (408).

    The connection is closed after the answer: the rest of the body may still be on its way.
    """

    status = 408
    code = "body_timeout"
    headers: ClassVar[dict[str, str]] = {"Connection": "close"}


class InvalidParameterError(BadRequestError):
    """A query or path parameter of the read API is wrong; `details["parameter"]` names it."""

    code = "invalid_parameter"


class UnknownParameterError(InvalidParameterError):
    code = "unknown_parameter"


class UnknownDatasetError(InvalidParameterError):
    code = "unknown_dataset"


class UnknownSourceError(InvalidParameterError):
    code = "unknown_source"


class UnknownTableError(InvalidParameterError):
    code = "unknown_table"


class UnknownFilterError(InvalidParameterError):
    code = "unknown_filter"


class InvalidFilterError(InvalidParameterError):
    code = "invalid_filter"


class InvalidTimestampError(InvalidParameterError):
    code = "invalid_timestamp"


class InvalidRangeError(InvalidParameterError):
    code = "invalid_range"


class InvalidLimitError(InvalidParameterError):
    code = "invalid_limit"


class InvalidCursorError(InvalidParameterError):
    code = "invalid_cursor"


class PayloadTooLargeError(IngestError):
    """A size limit was exceeded; `details["limit"]` names the setting (413)."""

    status = 413
    code = "payload_too_large"


class UnsupportedEncodingError(IngestError):
    """A Content-Encoding other than gzip or identity (415)."""

    status = 415
    code = "unsupported_content_encoding"


class IdempotencyKeyInProgressError(IngestError):
    """Another request with the same Idempotency-Key is being landed; retry shortly (409)."""

    status = 409
    code = "idempotency_key_in_progress"
    headers: ClassVar[dict[str, str]] = {"Retry-After": "1"}


class IdempotencyKeyReusedError(IngestError):
    """The Idempotency-Key was already used with a different body (422)."""

    status = 422
    code = "idempotency_key_reused"


class RateLimitedError(IngestError):
    """The key sent more events than its rate allows; `retry_after_s` says when to retry (429)."""

    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: int, **details: Any) -> None:
        super().__init__(message, **details)
        self.headers = {"Retry-After": str(retry_after_s)}  # type: ignore[misc]


class ServiceUnavailableError(IngestError):
    """A backing service failed; nothing was acknowledged and the client should retry (503)."""

    status = 503
    code = "service_unavailable"
    retry_after_s: ClassVar[int] = 5
    headers: ClassVar[dict[str, str]] = {"Retry-After": str(retry_after_s)}


class StorageUnavailableError(ServiceUnavailableError):
    code = "storage_unavailable"


class RegistryUnavailableError(ServiceUnavailableError):
    code = "registry_unavailable"


class LakeUnavailableError(ServiceUnavailableError):
    code = "lake_unavailable"


class QueryTimeoutError(ServiceUnavailableError):
    """A read query ran past its statement timeout; narrow the time range or the filters."""

    code = "query_timeout"


class OverloadedError(ServiceUnavailableError):
    """More requests in flight in this worker than `max_inflight_requests`; none was queued."""

    code = "overloaded"
    retry_after_s: ClassVar[int] = 1
    headers: ClassVar[dict[str, str]] = {"Retry-After": str(retry_after_s)}


async def handle_ingest_error(request: Request, exc: Exception) -> Response:
    """The one mapping of the IngestError family to HTTP: status, headers and JSON body."""
    if not isinstance(exc, IngestError):  # pragma: no cover - registered for IngestError only
        raise exc
    fields = log_fields(request)
    fields["error"] = exc.code
    if exc.cause:
        fields["cause"] = exc.cause
    return JsonResponse(exc.body(), status_code=exc.status, headers=exc.headers)


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


async def handle_http_error(request: Request, exc: Exception) -> Response:
    """Framework errors (unknown path, wrong method) in the same `{"error": ...}` shape."""
    if not isinstance(exc, HTTPException):  # pragma: no cover - registered for HTTPException only
        raise exc
    code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
    log_fields(request)["error"] = code
    return JsonResponse(
        {"error": {"code": code, "message": str(exc.detail)}},
        status_code=exc.status_code,
        headers=exc.headers,
    )
