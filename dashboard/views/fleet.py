"""Fleet (000): online share against its rolling baseline, the monitor's alerts, and segment
breakouts, from analytics.fleet_online, fleet_segments, fleet_monitor and alerts.

The sidebar's N and threshold start at the monitor's settings (TLAKE_MONITOR_HISTORY,
TLAKE_MONITOR_DROP_THRESHOLD); every control is bound to a query parameter, so a link keeps them.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import streamlit as st

from dashboard import queries
from dashboard.views.common import count, guarded, no_data, pct, table
from lake_config.settings import get_settings

# The breakouts' y axis: share of the snapshot's machines online, or raw counts.
MEASURES = {"share": "share of online (%)", "counts": "machines online"}
DEFAULT_SEGMENTS = ("State", "Type")
RECENT_SNAPSHOTS = 12


@guarded
def render() -> None:
    """The Fleet page."""
    st.title("Fleet")
    st.caption(
        "From `analytics.fleet_online`, `fleet_segments`, `fleet_monitor` and `alerts`: machines "
        "online per snapshot, overall and per segment, and the online-share monitor."
    )
    settings = get_settings()
    history = int(
        st.sidebar.number_input(
            "Baseline snapshots (N)",
            min_value=1,
            max_value=1000,
            value=settings.monitor_history,
            key="history",
            bind="query-params",
        )
    )
    threshold_pct = st.sidebar.slider(
        "Drop threshold (%)",
        min_value=1,
        max_value=99,
        value=round(100 * settings.monitor_drop_threshold),
        key="threshold",
        bind="query-params",
    )
    series = queries.read(
        queries.FLEET_ONLINE_SERIES, {"history": history, "threshold": threshold_pct / 100}
    )
    if series.empty:
        no_data("analytics.fleet_online")
        return
    _monitor(series.iloc[-1], history, threshold_pct)
    _online_share(series, threshold_pct)
    _breakouts()
    _recorded()


def _monitor(latest: pd.Series, history: int, threshold_pct: int) -> None:
    st.subheader("Online share vs baseline")
    cols = st.columns(4)
    cols[0].metric("Latest online", pct(latest["online_share"]))
    cols[1].metric(f"Baseline (previous {history})", _or_dash(latest["baseline_share"], pct))
    cols[2].metric("Drop", _or_dash(latest["drop_fraction"], pct))
    cols[3].metric("Machines online", f"{count(latest['online'])} of {count(latest['inventory'])}")
    when = f"{latest['ts']:%Y-%m-%d %H:%M} UTC"
    used = int(latest["baseline_snapshots"])
    if used == 0:
        st.info(f"Only one snapshot so far ({when}): the baseline needs a previous one.")
        return
    if used < history:
        st.caption(f"Baseline from {used} of {history} snapshots: not enough history yet.")
    verdict = (
        f"{pct(latest['online_share'])} online at {when} against a baseline of "
        f"{pct(latest['baseline_share'])}: a drop of {pct(latest['drop_fraction'])} "
        f"(threshold {threshold_pct}%)."
    )
    if latest["breached"]:
        st.error(f"**Alert: online share dropped below the threshold.** {verdict}")
    else:
        st.success(f"**Within threshold.** {verdict}")


def _online_share(series: pd.DataFrame, threshold_pct: int) -> None:
    st.subheader("Online share over time")
    shown = series.assign(
        online_pct=100 * series["online_share"],
        baseline_pct=100 * series["baseline_share"],
        drop_pct=100 * series["drop_fraction"],
        # Below this line a snapshot breaches the threshold.
        alert_below_pct=series["baseline_share"] * (100 - threshold_pct),
    )
    st.line_chart(
        shown,
        x="ts",
        y=["online_pct", "baseline_pct", "alert_below_pct"],
        x_label="snapshot",
        y_label="online %",
    )
    recent = shown.iloc[::-1].head(RECENT_SNAPSHOTS)
    st.caption(f"Latest {len(recent)} snapshots, newest first.")
    columns = ["ts", "online", "reporting", "errors", "inventory", "online_pct", "baseline_pct"]
    table(recent[[*columns, "drop_pct", "breached"]])


def _breakouts() -> None:
    st.subheader("Segment breakouts")
    names = queries.read(queries.FLEET_SEGMENT_NAMES)["segment"].tolist()
    if not names:
        no_data("analytics.fleet_segments")
        return
    default = [n for n in DEFAULT_SEGMENTS if n in names] or names[:1]
    chosen = st.multiselect("Segments", names, default=default, key="segments", bind="query-params")
    left, right = st.columns(2)
    top = int(
        left.slider(
            "Top values per segment",
            min_value=1,
            max_value=20,
            value=5,
            key="top",
            bind="query-params",
        )
    )
    # No format_func: a bound widget reads its query parameter as the option's label.
    measure = right.radio("Show", list(MEASURES), horizontal=True, key="show", bind="query-params")
    if not chosen:
        st.info("Pick at least one segment.")
        return
    rows = queries.read(queries.FLEET_SEGMENT_SERIES, {"segments": chosen, "top": top})
    y = "share_pct" if measure == "share" else "count"
    st.line_chart(rows, x="ts", y=y, color="series", x_label="snapshot", y_label=MEASURES[measure])
    latest = rows[rows["ts"] == rows["ts"].max()]
    st.caption(
        f"Top {top} values per segment at the latest snapshot "
        f"({rows['ts'].max():%Y-%m-%d %H:%M} UTC); share is of the machines online then."
    )
    table(latest[["segment", "dim_values", "count", "share_pct"]])


def _recorded() -> None:
    st.subheader("Recorded by `tlake monitor`")
    verdicts = queries.read(queries.FLEET_MONITOR_RECENT, {"limit": queries.RECENT_ALERTS})
    if verdicts.empty:
        st.info("`tlake monitor` has not recorded a verdict yet (it runs after each fleet load).")
    else:
        table(verdicts)
    st.subheader("Fleet alerts")
    alerts = queries.read(queries.FLEET_ALERTS, {"limit": queries.RECENT_ALERTS})
    if alerts.empty:
        st.success("No fleet alert recorded: the online share never dropped past the threshold.")
        return
    table(alerts)


def _or_dash(value: float, fmt: Callable[[float], str]) -> str:
    return "—" if pd.isna(value) else fmt(value)
