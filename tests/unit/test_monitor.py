"""The online-share monitor's verdict (pure part): rolling baseline, drop, threshold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from monitoring.online_share import evaluate

T0 = datetime(2024, 5, 1, 10, tzinfo=UTC)


def _shares(*values: float) -> list[tuple[datetime, float]]:
    return [(T0 + timedelta(minutes=5 * n), v) for n, v in enumerate(values)]


def test_a_drop_beyond_the_threshold_breaches() -> None:
    verdict = evaluate(_shares(0.9, 0.8, 0.9, 0.8, 0.6), history=4, threshold=0.15)
    assert verdict is not None
    assert verdict.ts == T0 + timedelta(minutes=20)
    assert verdict.baseline_share == pytest.approx(0.85)
    assert verdict.drop_fraction == pytest.approx((0.85 - 0.6) / 0.85)
    assert verdict.breached
    assert verdict.severity == "warning"  # 29% drop: beyond 15%, within 30%
    assert "ALERT" in verdict.render()


def test_only_the_previous_history_snapshots_make_the_baseline() -> None:
    # 0.1 is older than the 2 snapshots of history; shares come in any order.
    verdict = evaluate(list(reversed(_shares(0.1, 0.8, 0.8, 0.7))), history=2, threshold=0.15)
    assert verdict is not None
    assert verdict.baseline_share == pytest.approx(0.8)
    assert verdict.drop_fraction == pytest.approx(0.125)
    assert not verdict.breached


def test_a_collapse_is_critical_and_a_rise_is_fine() -> None:
    collapse = evaluate(_shares(0.9, 0.9, 0.3), history=2, threshold=0.15)
    assert collapse is not None and collapse.breached and collapse.severity == "critical"
    rise = evaluate(_shares(0.5, 0.5, 0.9), history=2, threshold=0.15)
    assert rise is not None and not rise.breached and rise.drop_fraction < 0


def test_no_baseline_until_history_snapshots_exist() -> None:
    assert evaluate([], history=4, threshold=0.15) is None
    young = evaluate(_shares(0.9, 0.1), history=4, threshold=0.15)
    assert young is not None
    assert (young.baseline_share, young.breached) == (None, False)
    assert "baseline needs 4 earlier snapshots" in young.render()


def test_a_monitor_that_cannot_run_reports_nothing_and_never_raises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from lake_config.settings import Settings
    from monitoring.online_share import check_safely

    nowhere = Settings(env="test", database_url="postgresql://postgres@127.0.0.1:9/none")
    with caplog.at_level("WARNING", logger="tlake.monitor"):
        assert check_safely(nowhere) is None
    assert "online-share monitor skipped: OperationalError" in caplog.text
