"""Every status the ingest API answers, each with its reason, against the real stack.

Most are asserted next to the feature they belong to (test_ingest_api.py, test_ingest_edge.py,
test_ingest_idempotency.py, test_ingest_segment.py); this module adds the rest (404, 405 and
408 from a raw socket that stalls or trickles its body) and checks that every error code of
`ingest_api.errors` is asserted by some integration test.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
import uvicorn

from ingest_api import errors
from ingest_api.main import create_app
from lake_config.settings import Settings
from tests.integration.test_ingest_api import batch, closed_port, event

pytestmark = pytest.mark.integration

HERE = Path(__file__).parent
# What the ingest routes (/v1/events, the Segment routes) and the probes can answer besides
# their receipts, by status (ingest_api/README.md "Answers").
INGEST_CODES = {
    400: {
        errors.InvalidJsonError.code,
        errors.InvalidEnvelopeError.code,
        errors.UnsupportedSchemaVersionError.code,
        errors.InvalidEncodingError.code,
        errors.InvalidIdempotencyKeyError.code,
    },
    401: {errors.MissingApiKeyError.code, errors.InvalidApiKeyError.code},
    403: {errors.InsufficientScopeError.code},
    404: {"not_found"},
    405: {"method_not_allowed"},
    408: {errors.BodyTimeoutError.code},
    409: {errors.IdempotencyKeyInProgressError.code},
    413: {errors.PayloadTooLargeError.code},
    415: {errors.UnsupportedEncodingError.code},
    422: {errors.IdempotencyKeyReusedError.code},
    429: {errors.RateLimitedError.code},
    503: {
        errors.StorageUnavailableError.code,
        errors.RegistryUnavailableError.code,
        errors.OverloadedError.code,
        "not_ready",
    },
}


def test_every_ingest_error_code_is_asserted_by_an_integration_test() -> None:
    sources = "\n".join(
        p.read_text().split(TESTS_START)[-1]  # in this module, its tests, not the list above
        for p in sorted(HERE.glob("test_ingest_*.py"))
    )
    codes = set().union(*INGEST_CODES.values())

    missing = sorted(code for code in codes if f'"{code}"' not in sources)

    assert missing == []
    assert "body_timeout" in codes and len(codes) == 20


TESTS_START = "# --- framework answers ---"


# --- framework answers --------------------------------------------------------------------------


def test_unknown_path_is_404_not_found(api_url: str) -> None:
    response = httpx.post(f"{api_url}/v1/nowhere", content=b"{}")

    assert response.status_code == 404
    assert response.json() == {"error": {"code": "not_found", "message": "Not Found"}}


def test_wrong_method_is_405_method_not_allowed(api_url: str, write_key: str) -> None:
    response = httpx.get(f"{api_url}/v1/events", headers={"Authorization": f"Bearer {write_key}"})

    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"
    assert response.json() == {
        "error": {"code": "method_not_allowed", "message": "Method Not Allowed"}
    }


# --- 408: bodies that stall or trickle ----------------------------------------------------------


def raw_request(
    url: str, path: str, headers: dict[str, str], parts: list[bytes], *, pause_s: float = 0.0
) -> tuple[int, dict[str, str], bytes, bool, float]:
    """Send a request by hand: its headers, then `parts` of its body `pause_s` apart, and no
    more; read the answer. Returns status, headers, body, whether the server then closed the
    connection, and the seconds from the headers to the answer."""
    where = urlsplit(url)
    with socket.create_connection((where.hostname, where.port), timeout=120) as sock:
        head = [f"POST {path} HTTP/1.1", f"Host: {where.netloc}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        started = time.monotonic()
        try:
            for part in parts:
                time.sleep(pause_s)
                sock.sendall(part)
        except OSError:
            pass  # the server answered and closed while we were still sending
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed without an answer: {received!r}"
            received += chunk
        took = time.monotonic() - started
        head_bytes, _, body = received.partition(b"\r\n\r\n")
        lines = head_bytes.decode().split("\r\n")
        status = int(lines[0].split()[1])
        answer_headers = {
            k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])
        }
        while len(body) < int(answer_headers["content-length"]):
            chunk = sock.recv(65536)
            assert chunk, "connection closed inside the answer"
            body += chunk
        try:
            closed = sock.recv(1) == b""
        except ConnectionResetError:
            closed = True
    return status, answer_headers, body, closed, took


def stalled(url: str, path: str, authorization: str) -> tuple[int, dict, bytes, bool, float]:
    headers = {
        "Authorization": authorization,
        "Content-Type": "application/json",
        "Content-Length": "500",
    }
    return raw_request(url, path, headers, [b'{"sent_at": "2024-05-01T10:00:05Z", "ev'])


def test_a_stalled_body_is_408_on_every_ingest_route_and_the_connection_closes(
    api_url: str, write_key: str, settings: Settings
) -> None:
    bearer = f"Bearer {write_key}"
    with ThreadPoolExecutor(2) as pool:  # both wait out body_timeout_s at once
        answers = list(
            pool.map(lambda path: stalled(api_url, path, bearer), ["/v1/events", "/v1/batch"])
        )

    for status, headers, body, closed, took in answers:
        assert status == 408
        assert headers["connection"] == "close"
        assert orjson.loads(body) == {
            "error": {
                "code": "body_timeout",
                "message": "request body stalled: no byte for "
                f"body_timeout_s={settings.body_timeout_s:g}",
                "limit": "body_timeout_s",
                "max": settings.body_timeout_s,
            }
        }
        assert closed
        assert settings.body_timeout_s <= took < settings.body_timeout_s + 10
    # The slot was given back: the API goes on answering.
    ok = httpx.post(
        f"{api_url}/v1/events",
        content=orjson.dumps(batch(event())),
        headers={"Authorization": bearer},
    )
    assert ok.status_code == 202, ok.text


@pytest.fixture
def quick_timeouts_api(settings: Settings) -> Iterator[tuple[str, Settings]]:
    """The API in a real uvicorn (in a thread) with sub-second body timeouts."""
    port = closed_port()
    quick = settings.model_copy(update={"body_timeout_s": 0.5, "body_total_timeout_s": 1.5})
    server = uvicorn.Server(
        uvicorn.Config(create_app(quick), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", quick
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_a_trickling_body_is_408_naming_the_total_limit(
    quick_timeouts_api: tuple[str, Settings], write_key: str
) -> None:
    url, quick = quick_timeouts_api
    body = orjson.dumps(batch(event()))
    headers = {"Authorization": f"Bearer {write_key}", "Content-Length": str(len(body))}
    # One byte every 0.2 s: never idle for body_timeout_s, far too slow for the whole.
    parts = [body[i : i + 1] for i in range(len(body))]

    status, answer_headers, answer, closed, took = raw_request(
        url, "/v1/events", headers, parts, pause_s=0.2
    )

    assert status == 408
    assert orjson.loads(answer)["error"] == {
        "code": "body_timeout",
        "message": "request body not complete within body_total_timeout_s=1.5",
        "limit": "body_total_timeout_s",
        "max": 1.5,
    }
    assert answer_headers["connection"] == "close" and closed
    assert quick.body_total_timeout_s <= took < quick.body_total_timeout_s + 5


def test_a_slow_but_steady_body_within_the_limits_lands(
    quick_timeouts_api: tuple[str, Settings], write_key: str
) -> None:
    url, _ = quick_timeouts_api
    body = orjson.dumps(batch(event()))
    headers = {"Authorization": f"Bearer {write_key}", "Content-Length": str(len(body))}
    parts = [body[: len(body) // 2], body[len(body) // 2 :]]

    status, _, answer, _, _ = raw_request(url, "/v1/events", headers, parts, pause_s=0.3)

    assert status == 202, answer
    assert orjson.loads(answer)["accepted"] == 1
