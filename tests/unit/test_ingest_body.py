"""Reading and decoding the request body: caps on the wire and after gzip, bombs, bad gzip."""

from __future__ import annotations

import asyncio
import gzip
import re
import time
import tracemalloc
import zlib
from collections.abc import Iterable

import pytest
from starlette.requests import ClientDisconnect, Request

from ingest_api.body import BodyTimeouts, content_coding, decode_body, gunzip, read_body
from ingest_api.errors import (
    BodyTimeoutError,
    InvalidEncodingError,
    PayloadTooLargeError,
    UnsupportedEncodingError,
)

CAP = 1_000


def request(chunks: Iterable[bytes], headers: dict[str, str] | None = None) -> Request:
    messages = [{"type": "http.request", "body": c, "more_body": True} for c in chunks]
    messages.append({"type": "http.request", "body": b"", "more_body": False})

    async def receive() -> dict[str, object]:
        return messages.pop(0)

    raw_headers = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return Request({"type": "http", "method": "POST", "headers": raw_headers}, receive)


def test_read_body_joins_the_stream() -> None:
    body = asyncio.run(read_body(request([b"ab", b"cd"]), CAP))

    assert body == b"abcd"


@pytest.mark.parametrize("timeouts", [None, BodyTimeouts(idle_s=1.0, total_s=5.0)])
def test_a_client_gone_mid_body_is_a_disconnect(timeouts: BodyTimeouts | None) -> None:
    messages = [
        {"type": "http.request", "body": b'{"sent_at": ', "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> dict[str, object]:
        return messages.pop(0)

    req = Request({"type": "http", "method": "POST", "headers": []}, receive)
    with pytest.raises(ClientDisconnect):
        asyncio.run(read_body(req, CAP, timeouts))
    assert messages == []


def test_read_body_refuses_a_declared_length_above_the_cap_without_reading() -> None:
    req = request([b"never read"], {"Content-Length": str(CAP + 1)})

    with pytest.raises(PayloadTooLargeError, match="request body exceeds max_request_bytes=1000"):
        asyncio.run(read_body(req, CAP))


def test_read_body_refuses_a_stream_that_passes_the_cap() -> None:
    chunks = (b"x" * 300 for _ in range(10))  # no Content-Length: chunked upload

    with pytest.raises(
        PayloadTooLargeError, match="request body exceeds max_request_bytes=1000"
    ) as info:
        asyncio.run(read_body(request(chunks), CAP))
    assert info.value.details == {"limit": "max_request_bytes", "max": CAP}


@pytest.mark.parametrize(
    ("header", "coding"),
    [
        (None, "identity"),
        ("", "identity"),
        ("identity", "identity"),
        ("gzip", "gzip"),
        (" GZIP ", "gzip"),
        ("x-gzip", "gzip"),
    ],
)
def test_content_coding_accepts_gzip_and_identity(header: str | None, coding: str) -> None:
    assert content_coding(header) == coding


@pytest.mark.parametrize("header", ["br", "deflate", "gzip, gzip", "zstd"])
def test_content_coding_refuses_anything_else(header: str) -> None:
    with pytest.raises(UnsupportedEncodingError, match="Content-Encoding must be gzip or identity"):
        content_coding(header)


def test_identity_body_above_decompressed_cap_is_too_large() -> None:
    with pytest.raises(
        PayloadTooLargeError, match="decompressed body exceeds max_decompressed_bytes=1000"
    ):
        decode_body(b"x" * (CAP + 1), "identity", CAP)
    assert decode_body(b"x" * CAP, "identity", CAP) == b"x" * CAP


def test_gunzip_round_trips_up_to_exactly_the_cap() -> None:
    data = bytes(range(256)) * 3 + b"tail"
    assert gunzip(gzip.compress(data), len(data)) == data
    assert decode_body(gzip.compress(data), "gzip", len(data)) == data


def test_gunzip_one_byte_over_the_cap_is_too_large() -> None:
    with pytest.raises(
        PayloadTooLargeError, match="decompressed body exceeds max_decompressed_bytes=1000"
    ) as info:
        gunzip(gzip.compress(b"x" * (CAP + 1)), CAP)
    assert info.value.details == {"limit": "max_decompressed_bytes", "max": CAP}


def test_gunzip_reads_every_member_and_zero_padding() -> None:
    data = gzip.compress(b"first,") + gzip.compress(b"second") + b"\0" * 8

    assert gunzip(data, CAP) == b"first,second"


def test_gunzip_caps_the_sum_of_members() -> None:
    data = gzip.compress(b"a" * 600) + gzip.compress(b"b" * 600)

    with pytest.raises(PayloadTooLargeError, match="max_decompressed_bytes=1000"):
        gunzip(data, CAP)


def test_gzip_bomb_is_refused_without_inflating_it() -> None:
    inflated = 200_000_000
    bomb = zlib.compressobj(9, zlib.DEFLATED, 31)
    body = b"".join(bomb.compress(b"\0" * 1_000_000) for _ in range(inflated // 1_000_000))
    body += bomb.flush()
    cap = 1_000_000
    assert len(body) < cap  # small on the wire, 200 MB inflated

    tracemalloc.start()
    try:
        with pytest.raises(
            PayloadTooLargeError, match="decompressed body exceeds max_decompressed_bytes=1000000"
        ):
            gunzip(body, cap)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * cap


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not gzip at all", "body is not valid gzip"),
        (zlib.compress(b"{}"), "body is not valid gzip"),  # zlib wrapper, not gzip
        (gzip.compress(b'{"a": 1}')[:-12], "gzip body is truncated"),
        (b"", "gzip body is truncated"),
        (gzip.compress(b"{}") + b"garbage", "body is not valid gzip"),
    ],
)
def test_gunzip_refuses_what_is_not_complete_gzip(data: bytes, message: str) -> None:
    with pytest.raises(InvalidEncodingError, match=re.escape(message)):
        gunzip(data, CAP)


def trickle(chunks: list[bytes], *, pause_s: float, stall: bool = False) -> Request:
    """A request whose chunks arrive `pause_s` apart; with `stall`, nothing after them."""
    messages = [{"type": "http.request", "body": c, "more_body": True} for c in chunks]
    if not stall:
        messages.append({"type": "http.request", "body": b"", "more_body": False})

    async def receive() -> dict[str, object]:
        if not messages:
            await asyncio.Event().wait()  # a client that sends nothing more, ever
        await asyncio.sleep(pause_s)
        return messages.pop(0)

    return Request({"type": "http", "method": "POST", "headers": []}, receive)


def test_read_body_within_its_timeouts_is_read_whole() -> None:
    timeouts = BodyTimeouts(idle_s=1.0, total_s=5.0)

    body = asyncio.run(read_body(trickle([b"ab", b"cd"], pause_s=0.01), CAP, timeouts))

    assert body == b"abcd"


def test_a_stalled_body_is_408_naming_body_timeout_s() -> None:
    timeouts = BodyTimeouts(idle_s=0.2, total_s=5.0)
    req = trickle([b'{"sent_at": '], pause_s=0.0, stall=True)

    started = time.monotonic()
    with pytest.raises(
        BodyTimeoutError, match=r"^request body stalled: no byte for body_timeout_s=0\.2$"
    ) as info:
        asyncio.run(read_body(req, CAP, timeouts))
    assert 0.2 <= time.monotonic() - started < 2
    assert (info.value.status, info.value.code) == (408, "body_timeout")
    assert info.value.details == {"limit": "body_timeout_s", "max": 0.2}
    assert info.value.headers == {"Connection": "close"}


def test_a_trickling_body_is_408_naming_body_total_timeout_s() -> None:
    timeouts = BodyTimeouts(idle_s=0.2, total_s=0.5)  # every chunk in time, the whole too slow
    req = trickle([b"x"] * 50, pause_s=0.05)

    started = time.monotonic()
    with pytest.raises(
        BodyTimeoutError,
        match=r"^request body not complete within body_total_timeout_s=0\.5$",
    ) as info:
        asyncio.run(read_body(req, CAP, timeouts))
    assert 0.5 <= time.monotonic() - started < 2
    assert info.value.details == {"limit": "body_total_timeout_s", "max": 0.5}
