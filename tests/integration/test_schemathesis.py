"""schemathesis against the real API's /openapi.json: no 5xx, and every 4xx body well-formed.

Every operation of the running API (uvicorn, on the session's real stack) gets cases generated
from its schema, valid ones (positive) and ones that break it (negative), sent with the key its
routes need so that they reach validation rather than stopping at 401. Each response must be
below 500, and a 4xx must be either the error body `{"error": {"code": <snake_case>,
"message": <text>}}` or, for 422 from an ingest route, the per-event receipt. Every operation is
run even when another fails; the failures are reported together, each with the smallest case
Hypothesis found.

At least `MIN_CASES` cases are sent in all, most to the six ingest routes; they land real
objects and quarantine rows under this session's `mobile` source.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import APIOperation, Case, GenerationMode

pytestmark = pytest.mark.integration

MIN_CASES = 1_000
# Examples per operation and generation mode (an upper bound: Hypothesis stops earlier once it
# has tried every distinct case, as for the probes, which take no input).
INGEST_EXAMPLES = 100  # 6 ingest routes x 2 modes x 100 = 1,200
OTHER_EXAMPLES = 15
INGEST_TAGS = {"events", "segment"}
READ_TAGS = {"read", "catalog"}
SNAKE_CASE = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*\Z")
RECEIPT_KEYS = {"batch_id", "object_key", "accepted", "rejected", "results"}


def well_formed(case: Case, status: int, body: Any) -> str | None:
    """Why the answer to `case` is not acceptable, or None."""
    if status >= 500:
        return f"{status}: a server error"
    if status < 400:
        return None
    if status == 422 and isinstance(body, dict) and "results" in body:
        if set(body) != RECEIPT_KEYS or not isinstance(body["results"], list):
            return f"422 receipt with keys {sorted(body)}"
        return None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return f"{status} without an error object: {body!r:.200}"
    code, message = error.get("code"), error.get("message")
    if not isinstance(code, str) or not SNAKE_CASE.match(code):
        return f"{status} with error code {code!r}"
    if not isinstance(message, str) or not message:
        return f"{status} ({code}) without a message"
    return None


def headers_for(operation: APIOperation, write_key: str, read_key: str) -> dict[str, str]:
    tags = set(operation.tags or [])
    if tags & INGEST_TAGS:
        return {"Authorization": f"Bearer {write_key}"}
    if tags & READ_TAGS:
        return {"Authorization": f"Bearer {read_key}"}
    return {}


def run_operation(
    operation: APIOperation,
    mode: GenerationMode,
    headers: dict[str, str],
    examples: int,
    statuses: Counter[int],
) -> int:
    """Send up to `examples` generated cases; the number sent. Raises on the first bad answer
    (after Hypothesis shrank it)."""
    sent = 0

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,  # nothing written into the work tree
        derandomize=True,  # the same cases every run: a failure here is reproducible
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    def send(case: Case) -> None:
        nonlocal sent
        sent += 1
        response = case.call(headers=headers, timeout=30)
        statuses[response.status_code] += 1
        try:
            body = response.json()
        except ValueError:
            body = response.text
        problem = well_formed(case, response.status_code, body)
        assert problem is None, f"{problem}\n{case.as_curl_command(headers=headers)}"

    send()
    return sent


def test_generated_cases_get_no_5xx_and_well_formed_4xx(
    api_url: str, write_key: str, read_key: str
) -> None:
    schema = schemathesis.openapi.from_url(f"{api_url}/openapi.json", timeout=30)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {"POST /v1/events", "POST /v1/batch", "POST /v1/track"} <= {
        op.label for op in operations
    }

    counts: dict[str, int] = {}
    statuses: dict[str, Counter[int]] = {}
    failures: list[str] = []
    for operation in operations:
        ingest = bool(set(operation.tags or []) & INGEST_TAGS)
        examples = INGEST_EXAMPLES if ingest else OTHER_EXAMPLES
        headers = headers_for(operation, write_key, read_key)
        # An operation that takes no input has nothing to break: positive cases only.
        takes_input = bool(operation.body) or any(True for _ in operation.iter_parameters())
        modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE][: 2 if takes_input else 1]
        for mode in modes:
            label = f"{operation.label} ({mode.value})"
            statuses[label] = Counter()
            started = time.monotonic()
            try:
                counts[label] = run_operation(operation, mode, headers, examples, statuses[label])
            except Exception as exc:  # every operation runs; all failures are reported
                failures.append(f"{label}: {type(exc).__name__}: {exc}")
            took = time.monotonic() - started
            print(f"  {label}: {counts.get(label)} cases in {took:.1f}s, {dict(statuses[label])}")

    total = sum(counts.values())
    print(f"schemathesis: {total} cases over {len(operations)} operations")
    assert failures == [], "\n\n".join(failures)
    assert total >= MIN_CASES, counts
