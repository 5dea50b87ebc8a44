"""The fleet online-share monitor (000's SRE monitor), over analytics.fleet_online.

For the latest snapshot, the share of the inventory online is compared with the rolling
baseline: the mean share of the `history` snapshots before it. When it dropped by more than
`threshold` (a fraction of the baseline), the snapshot is breached and one alert is recorded in
analytics.alerts (source `fleet-monitor`; critical beyond twice the threshold), once per
snapshot however often the monitor runs. Every verdict is kept in analytics.fleet_monitor.

`check_safely` is what the DAG and `tlake run` call: whatever goes wrong (no data yet, the
database down, a missing migration) is logged and reported as "no verdict", never raised, so a
failing monitor never breaks ingestion.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
from psycopg.rows import dict_row

from lake_config.settings import Settings

SOURCE = "fleet-monitor"
log = logging.getLogger("tlake.monitor")


@dataclass(frozen=True)
class Verdict:
    """The monitor's reading of one snapshot."""

    ts: datetime
    online_share: float
    baseline_share: float | None  # None until `history` earlier snapshots exist
    drop_fraction: float | None  # (baseline - latest) / baseline; negative when it rose
    threshold: float
    history: int
    breached: bool
    alert_id: int | None = None

    @property
    def severity(self) -> str:
        drop = self.drop_fraction or 0.0
        return "critical" if drop > 2 * self.threshold else "warning"

    def render(self) -> str:
        head = (
            f"snapshot {self.ts.astimezone(UTC):%Y-%m-%d %H:%M} UTC: {self.online_share:.1%} online"
        )
        if self.baseline_share is None:
            return f"{head}; baseline needs {self.history} earlier snapshots"
        state = "ALERT" if self.breached else "ok"
        return (
            f"{head}, baseline {self.baseline_share:.1%} (previous {self.history}), "
            f"drop {self.drop_fraction:.1%} vs threshold {self.threshold:.0%}: {state}"
        )


def evaluate(
    shares: Sequence[tuple[datetime, float]], *, history: int, threshold: float
) -> Verdict | None:
    """The verdict on the newest of `shares` ((ts, share), any order); None when empty.

    The baseline is the mean of the `history` snapshots just before the newest; with fewer, the
    verdict has no baseline and is never breached.
    """
    if not shares:
        return None
    ordered = sorted(shares)
    ts, latest = ordered[-1]
    before = [s for _, s in ordered[:-1]][-history:]
    if len(before) < history:
        return Verdict(ts, latest, None, None, threshold, history, breached=False)
    baseline = sum(before) / len(before)
    drop = (baseline - latest) / baseline if baseline > 0 else 0.0
    return Verdict(ts, latest, baseline, drop, threshold, history, breached=drop > threshold)


def check(settings: Settings, *, at: datetime | None = None) -> Verdict | None:
    """Evaluate the latest snapshot (or the latest at or before `at`), record the verdict and,
    when breached, one alert."""
    history = settings.monitor_history
    threshold = settings.monitor_drop_threshold
    with psycopg.connect(settings.database_url, connect_timeout=5, row_factory=dict_row) as conn:
        rows = conn.execute(
            """
            select ts, online_share from analytics.fleet_online
            where online_share is not null and (%(at)s::timestamptz is null or ts <= %(at)s)
            order by ts desc limit %(n)s
            """,
            {"at": at, "n": history + 1},
        ).fetchall()
        verdict = evaluate(
            [(r["ts"], float(r["online_share"])) for r in rows],
            history=history,
            threshold=threshold,
        )
        if verdict is None:
            return None
        with conn.transaction():
            alert_id = None
            previous = conn.execute(
                "select alert_id from analytics.fleet_monitor where ts = %s for update",
                (verdict.ts,),
            ).fetchone()
            if previous is not None:
                alert_id = previous["alert_id"]
            if verdict.breached and alert_id is None:
                alert_id = conn.execute(
                    """
                    insert into analytics.alerts (source, severity, message)
                    values (%s, %s, %s) returning alert_id
                    """,
                    (SOURCE, verdict.severity, verdict.render()),
                ).fetchone()["alert_id"]  # type: ignore[index]
            conn.execute(
                """
                insert into analytics.fleet_monitor as m (ts, online_share, baseline_share,
                    drop_fraction, threshold, history, breached, alert_id)
                values (%s, %s, %s, %s, %s, %s, %s, %s)
                on conflict (ts) do update set online_share = excluded.online_share,
                    baseline_share = excluded.baseline_share,
                    drop_fraction = excluded.drop_fraction, threshold = excluded.threshold,
                    history = excluded.history, breached = excluded.breached,
                    alert_id = coalesce(m.alert_id, excluded.alert_id), checked_at = now()
                """,
                (
                    verdict.ts,
                    verdict.online_share,
                    verdict.baseline_share,
                    verdict.drop_fraction,
                    threshold,
                    history,
                    verdict.breached,
                    alert_id,
                ),
            )
    return Verdict(**{**verdict.__dict__, "alert_id": alert_id})


def check_safely(settings: Settings) -> Verdict | None:
    """`check`, logging instead of raising: the monitor must never break ingestion."""
    try:
        verdict = check(settings)
    except Exception as exc:
        log.warning("online-share monitor skipped: %s: %s", type(exc).__name__, exc)
        return None
    if verdict is not None:
        (log.warning if verdict.breached else log.info)("%s", verdict.render())
    return verdict
