"""Stream (004): values with their short and long time-based rolling averages per stream, from
analytics.stream_rolling, and 004's melt and pivot shapes (views stream_melted, stream_pivot).
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import queries
from dashboard.views.common import count, guarded, no_data, table
from lake_config.settings import get_settings

DEFAULT_STREAMS = 3
MELTED_ROWS = 18  # three messages of each of two streams
PIVOT_SECONDS = 5


@guarded
def render() -> None:
    """The Stream page."""
    st.title("Stream")
    settings = get_settings()
    st.caption(
        "From `analytics.stream_rolling`: every message with the mean of its stream over the "
        f"short ({settings.stream_rolling_short_s} s) and long "
        f"({settings.stream_rolling_long_s} s) windows ending at it."
    )
    totals = queries.read(queries.STREAM_TOTALS)
    if totals.empty:
        no_data("analytics.stream_rolling")
        return
    table(totals)

    names = totals["device_id"].tolist()
    left, right = st.columns([3, 1])
    streams = left.multiselect(
        "Streams",
        names,
        default=names[:DEFAULT_STREAMS],
        key="streams",
        bind="query-params",
    )
    limit = int(
        right.number_input(
            "Latest messages per stream",
            min_value=10,
            max_value=100_000,
            value=1000,
            step=100,
            key="messages",
            bind="query-params",
        )
    )
    if not streams:
        st.info("Pick at least one stream.")
        return

    series = queries.read(queries.STREAM_SERIES, {"devices": streams, "limit": limit})
    grid = st.columns(2)
    for n, (name, rows) in enumerate(series.groupby("device_id", sort=True)):
        with grid[n % 2]:
            _stream(str(name), rows, totals[totals["device_id"] == name].iloc[0])

    st.subheader("Melted (one row per message and variable)")
    melted = queries.read(queries.STREAM_MELTED, {"devices": streams, "limit": MELTED_ROWS})
    table(melted)

    st.subheader("Pivot (one row per second and variable, a column per stream)")
    pivot = queries.read(queries.STREAM_PIVOT, {"limit": PIVOT_SECONDS})
    table(_spread(pivot))


def _stream(name: str, rows: pd.DataFrame, latest: pd.Series) -> None:
    st.subheader(f"Stream {name}")
    cols = st.columns(4)
    cols[0].metric("Messages", count(latest["messages"]))
    cols[1].metric("Latest value", f"{latest['last_value']:.1f}")
    cols[2].metric("Short rolling avg", f"{latest['rolling_avg_short']:.1f}")
    cols[3].metric("Long rolling avg", f"{latest['rolling_avg_long']:.1f}")
    st.line_chart(
        rows,
        x="occurred_at",
        y=["value", "rolling_avg_short", "rolling_avg_long"],
        x_label="time",
    )


def _spread(pivot: pd.DataFrame) -> pd.DataFrame:
    """`by_stream` ({stream: value}) as one column per stream, in name order."""
    streams = pd.DataFrame(pivot["by_stream"].tolist(), index=pivot.index, dtype="float64")
    return pivot.drop(columns="by_stream").join(streams[sorted(streams.columns)])
