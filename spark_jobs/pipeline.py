"""The pipeline stages, as `tlake run` and the Airflow DAG call them (docs/CONTRACTS.md).

A run claims raw objects in the registry, then loads exactly those: bronze (lines), silver
(events), gold (device hours, mirrored to PostgreSQL). Only after every Delta commit does
`finish` mark the objects processed. Every stage writes with a MERGE on declared keys — bronze
appends instead only on an object's first load, counted in the registry before the write
(`Registry.begin_bronze`) — so any stage may be re-run for the same run id after a crash, and a
run that takes over abandoned claims redoes the work of the crashed one without writing
anything twice.

Each stage looks its objects up in the registry (`Registry.claimed`), so the stages can run in
separate processes; each one it does work for is recorded in registry.pipeline_runs. What a
stage parsed is staged for the run's later stages (spark_jobs.staging); `finish` and `release`
delete it.

Two layers: the per-stage entry points (`claim` ... `finish`, each opening its own `Run`) that
the DAG and spark-submit call, and the stages on an open `Run` (`opened`, `*_stage`,
`release`) that `run_once` and `spark_jobs.reprocess` compose in one process.
"""

from __future__ import annotations

import logging
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from lake_config.errors import RegistryError
from lake_config.registry import ClaimedObject, Registry, RunHold, commit_lock
from lake_config.settings import Settings
from lake_config.spark import build_session
from spark_jobs.errors import RunError, translated

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from spark_jobs.gold.common import Touched

log = logging.getLogger(__name__)

# Fault injection for tests only: with TLAKE_CRASH_AFTER=<point>, `run_once` SIGKILLs its own
# process right after that point committed, so a test can stop a real `tlake run` at an exact
# stage boundary (tests/integration/test_crash_harness.py). `gold` is the last commit before
# the objects are marked processed. Unset in every deployment; an unknown value is refused.
CRASH_AFTER_ENV = "TLAKE_CRASH_AFTER"
CRASH_POINTS = ("claim", "bronze", "silver", "quality", "gold")
# `tlake reprocess` honours the same hook at its own boundary: `clear` is right after it deleted
# the range's silver rows, before deriving them again (the worst moment to die).
REPROCESS_CRASH_POINTS = ("clear",)


@dataclass(frozen=True)
class StageResult:
    """What one stage did for one run. Rows written count only rows new to (or changed in)
    their table, so a re-run of a finished stage reports zero."""

    run_id: str
    stage: str
    objects: int
    rows_in: int = 0
    rows_written: int = 0
    rows_quarantined: int = 0
    duration_s: float = 0.0


@dataclass(frozen=True)
class RunSummary:
    """What `run_once` did; all zero when there was nothing to claim."""

    run_id: str
    objects: int = 0
    lines: int = 0
    bronze_rows: int = 0
    silver_rows: int = 0
    gold_rows: int = 0
    quarantined: int = 0
    processed: int = 0
    duration_s: float = 0.0
    stages: tuple[StageResult, ...] = ()

    def render(self) -> str:
        """A few lines for a terminal: totals, then one line per stage."""
        if not self.objects:
            return f"run {self.run_id}: nothing pending ({self.duration_s:.1f} s)"
        lines = [
            f"run {self.run_id}: {self.objects} object(s), {self.lines} line(s), "
            f"{self.processed} processed, {self.quarantined} quarantined "
            f"in {self.duration_s:.1f} s"
        ]
        lines += [
            f"  {s.stage:<6} {s.rows_in:>9} in  {s.rows_written:>9} written  "
            f"{s.rows_quarantined:>6} quarantined  {s.duration_s:6.1f} s"
            for s in self.stages
        ]
        return "\n".join(lines)


@dataclass(frozen=True)
class _Counts:
    rows_in: int
    rows_written: int
    rows_quarantined: int = 0


class Run:
    """What the stages of one process share: settings, a registry pool, one Spark session.

    The session is built on first use, so a run with nothing to do never starts one.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry = Registry(settings, min_size=1, max_size=2)
        self.hold: RunHold | None = None  # set by run_once: its claims are session-tied
        self.claimed = 0  # objects the held run claimed, which heartbeat() expects to still hold
        self._spark: SparkSession | None = None

    @property
    def spark(self) -> SparkSession:
        if self._spark is None:
            self._spark = build_session(self.settings, app_name="tlake-pipeline")
        return self._spark

    def close(self) -> None:
        if self.hold is not None:
            self.hold.release()
        self.registry.close()

    def heartbeat(self) -> None:
        """Before each stage: renew the leases, and stop if any claim was lost meanwhile.

        A live run only loses claims when a stage outlasted the lease; then another run may be
        processing the same objects, and this one must not commit anything more.
        """
        if self.hold is None:
            return
        held = self.hold.heartbeat()
        if held < self.claimed:
            raise RegistryError(
                f"run {self.hold.run_id} lost {self.claimed - held} of its {self.claimed} claims "
                "(a stage outlasted the lease and another run took them); stopping before the "
                "next commit"
            )


@contextmanager
def opened(settings: Settings) -> Iterator[Run]:
    run = Run(settings)
    try:
        yield run
    finally:
        run.close()


def new_run_id() -> str:
    """A unique run id that sorts by start time: `20260101T120000Z-1a2b3c4d`."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def claim(settings: Settings, run_id: str) -> list[ClaimedObject]:
    """Claim up to `run_batch_objects` open objects for `run_id` (see lake_config.registry).

    Returns every object the run holds, including those an earlier attempt of the same run
    claimed: a retried claim task whose first try committed but died before reporting still
    carries on with its objects instead of leaving them to wait out their lease.

    These claims are leased, not session-tied: the stages that follow run in other processes
    (Airflow tasks), so no session lives as long as the run. `run_once` ties its claims.
    """
    with opened(settings) as run:
        return claim_stage(run, run_id)


def bronze(settings: Settings, run_id: str) -> StageResult:
    """The run's raw objects -> bronze.events (bad lines -> quarantine.events)."""
    with opened(settings) as run:
        return bronze_stage(run, run_id)


def silver(settings: Settings, run_id: str) -> StageResult:
    """The run's bronze rows -> silver.device_events (failed rules -> quarantine.events)."""
    with opened(settings) as run:
        return silver_stage(run, run_id)


def quality(settings: Settings, run_id: str) -> StageResult:
    """Run checks over what silver committed for the run (spark_jobs.checks); a broken `fail`
    check raises QualityError, so gold does not run."""
    with opened(settings) as run:
        return quality_stage(run, run_id)


def gold(settings: Settings, run_id: str) -> StageResult:
    """The keys the run's events touch -> every gold table (spark_jobs.gold.GOLD_JOBS) and its
    PostgreSQL mirror."""
    with opened(settings) as run:
        return gold_stage(run, run_id)


def finish(settings: Settings, run_id: str) -> int:
    """Mark the run's objects processed; call only after bronze, silver and gold succeeded."""
    with opened(settings) as run:
        return finish_stage(run, run_id)


def fail(settings: Settings, run_id: str, error: str) -> int:
    """Release the run's objects: back to pending, or failed after max_attempts tries."""
    with opened(settings) as run:
        released = run.registry.mark_failed(run_id, error)
    _clear_staging(settings, run_id)
    return released


def run_once(settings: Settings, *, run_id: str | None = None) -> RunSummary:
    """Claim, bronze, silver, quality, gold, finish. Raises RunError after releasing the claims.

    The run holds its registry session for its whole life (lake_config.registry.RunHold), so
    if this process dies its claims are taken by the next run at once, not at lease expiry.
    With nothing to claim it returns an all-zero summary without starting Spark.
    """
    run_id = run_id or new_run_id()
    crash_after = crash_point()
    started = time.monotonic()
    stage = "claim"
    with opened(settings) as run:
        try:
            run.hold = run.registry.hold(run_id)
        except RegistryError as exc:  # nothing claimed, and another process's claims stay its own
            raise RunError(run_id, stage, str(exc)) from exc
        try:
            claimed = claim_stage(run, run_id)
            if not claimed:
                return RunSummary(run_id=run_id, duration_s=time.monotonic() - started)
            run.claimed = len(claimed)
            maybe_crash(crash_after, stage)
            stage = "bronze"
            run.heartbeat()
            b = bronze_stage(run, run_id)
            maybe_crash(crash_after, stage)
            stage = "silver"
            run.heartbeat()
            s = silver_stage(run, run_id)
            maybe_crash(crash_after, stage)
            stage = "quality"
            run.heartbeat()
            q = quality_stage(run, run_id)
            maybe_crash(crash_after, stage)
            stage = "gold"
            run.heartbeat()
            g = gold_stage(run, run_id)
            maybe_crash(crash_after, stage)
            stage = "finish"
            run.heartbeat()
            processed = finish_stage(run, run_id)
        except Exception as exc:
            release(run, run_id, f"{stage}: {exc}", exc)
            raise RunError(run_id, stage, str(exc)) from exc
    return RunSummary(
        run_id=run_id,
        objects=len(claimed),
        lines=b.rows_in,
        bronze_rows=b.rows_written,
        silver_rows=s.rows_written,
        gold_rows=g.rows_written,
        quarantined=b.rows_quarantined + s.rows_quarantined,
        processed=processed,
        duration_s=time.monotonic() - started,
        stages=(b, s, q, g),
    )


def crash_point() -> str | None:
    """The TLAKE_CRASH_AFTER fault-injection point, validated (None when unset)."""
    point = os.environ.get(CRASH_AFTER_ENV) or None
    known = (*CRASH_POINTS, *REPROCESS_CRASH_POINTS)
    if point is not None and point not in known:
        raise ValueError(f"{CRASH_AFTER_ENV}={point!r} is not one of {list(known)}")
    return point


def maybe_crash(crash_after: str | None, stage: str) -> None:
    """Die like a killed worker (no cleanup, no release) when the fault hook names `stage`."""
    if crash_after == stage:
        os.kill(os.getpid(), signal.SIGKILL)


# --- stage bodies on a shared Run -------------------------------------------------------------


def claim_stage(run: Run, run_id: str) -> list[ClaimedObject]:
    fresh = run.registry.claim(run_id, hold=run.hold)
    claimed = run.registry.claimed(run_id)  # fresh claims plus any an earlier try took
    if fresh:  # an idle poll leaves no trace in pipeline_runs
        run.registry.stage_started(run_id, "claim", len(claimed))
        run.registry.stage_finished(run_id, "claim", rows_out=len(claimed))
    return claimed


def bronze_stage(run: Run, run_id: str) -> StageResult:
    from spark_jobs.bronze import events

    def work(objects: list[ClaimedObject]) -> _Counts:
        first_load = run.registry.begin_bronze(run_id)
        c = events.load(run.spark, run.settings, run_id, objects, first_load=first_load)
        return _Counts(c.lines, c.written, c.quarantined)

    return _staged(run, run_id, "bronze", work)


def silver_stage(run: Run, run_id: str, *, lock: bool = True) -> StageResult:
    """`lock`: hold the silver-writers lock shared (off only for `tlake reprocess`, which holds
    it exclusively around its own silver stage)."""
    from spark_jobs.reprocess import SILVER_WRITERS
    from spark_jobs.silver import device_events

    def work(objects: list[ClaimedObject]) -> _Counts:
        with commit_lock(run.settings, SILVER_WRITERS, shared=True) if lock else nullcontext():
            c = device_events.load(run.spark, run.settings, run_id, _keys(objects))
        return _Counts(c.rows_in, c.written, c.quarantined)

    return _staged(run, run_id, "silver", work)


def quality_stage(run: Run, run_id: str) -> StageResult:
    from spark_jobs import checks

    def work(objects: list[ClaimedObject]) -> _Counts:
        c = checks.load(run.spark, run.settings, run_id, _keys(objects))
        return _Counts(c.rows_checked, 0)

    return _staged(run, run_id, "quality", work)


def gold_stage(run: Run, run_id: str, *, also: Touched | None = None) -> StageResult:
    """`also`: keys to recompute besides the run's own (`tlake reprocess`: what a cleared range
    held before)."""
    from spark_jobs.gold import GOLD_JOBS
    from spark_jobs.gold.common import NOTHING, of_run

    def work(objects: list[ClaimedObject]) -> _Counts:
        touched = of_run(run.spark, run.settings, run_id, _keys(objects))
        if also is not None:
            touched = touched | also
        total = NOTHING
        for job in GOLD_JOBS:  # each skips at once when the run has none of its events
            total += job(run.spark, run.settings, touched)
        return _Counts(total.events, total.keys)

    return _staged(run, run_id, "gold", work)


def finish_stage(run: Run, run_id: str) -> int:
    held = len(run.registry.claimed(run_id))
    if not held:
        return 0
    run.registry.stage_started(run_id, "finish", held)
    processed = run.registry.mark_processed(run_id)
    run.registry.stage_finished(run_id, "finish", rows_out=processed)
    _clear_staging(run.settings, run_id)
    return processed


def _keys(objects: list[ClaimedObject]) -> list[str]:
    return [o.object_key for o in objects]


def _staged(
    run: Run, run_id: str, stage: str, work: Callable[[list[ClaimedObject]], _Counts]
) -> StageResult:
    """Run `work` on the objects `run_id` holds, recorded in pipeline_runs, errors translated."""
    objects = run.registry.claimed(run_id)
    if not objects:
        return StageResult(run_id=run_id, stage=stage, objects=0)
    run.registry.stage_started(run_id, stage, len(objects))
    started = time.monotonic()
    try:
        with translated():
            counts = work(objects)
    except Exception as exc:
        _record_failure(run, run_id, stage, exc)
        raise
    run.registry.stage_finished(run_id, stage, rows_in=counts.rows_in, rows_out=counts.rows_written)
    return StageResult(
        run_id=run_id,
        stage=stage,
        objects=len(objects),
        rows_in=counts.rows_in,
        rows_written=counts.rows_written,
        rows_quarantined=counts.rows_quarantined,
        duration_s=time.monotonic() - started,
    )


def _record_failure(run: Run, run_id: str, stage: str, exc: Exception) -> None:
    """Best effort: a registry that is down must not hide the error that ended the stage."""
    try:
        run.registry.stage_finished(run_id, stage, error=str(exc) or type(exc).__name__)
    except Exception as record_exc:
        exc.add_note(f"recording the failure in pipeline_runs failed too: {record_exc}")


def release(run: Run, run_id: str, error: str, exc: Exception) -> None:
    """Best effort: if the registry is down the claims come back when their lease expires."""
    try:
        run.registry.mark_failed(run_id, error)
    except Exception as release_exc:
        exc.add_note(
            f"releasing the claims failed too (they return at lease expiry): {release_exc}"
        )
    _clear_staging(run.settings, run_id)


def _clear_staging(settings: Settings, run_id: str) -> None:
    """Best effort: a folder left behind is only space, and the daily maintenance sweeps it."""
    from spark_jobs import staging

    try:
        staging.clear(settings, run_id)
    except Exception as exc:  # the run's outcome stands either way
        log.warning("could not remove the staged frames of run %s: %s", run_id, exc)
