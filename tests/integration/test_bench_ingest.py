"""bench/ingest.py's in-process part drives the real app (keys from the test stack's registry)."""

from __future__ import annotations

from pathlib import Path

import orjson

from bench.ingest import in_process, sample_batches
from lake_config.settings import Settings


def test_in_process_times_accepted_requests_against_the_ceiling(
    settings: Settings, write_key: str, tmp_path: Path
) -> None:
    log = tmp_path / "requests.log"

    app_us, ceiling_us = in_process(settings, write_key, sample_batches(2), 0.2, log)

    assert app_us > 0 and ceiling_us > 0
    lines = [orjson.loads(line) for line in log.read_text().splitlines()]
    assert len(lines) >= 7  # 5 warm-up requests, then at least one round of the two bodies
    assert {(line["path"], line["status"], line["accepted"]) for line in lines} == {
        ("/v1/events", 202, 100)
    }
