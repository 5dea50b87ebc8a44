"""Stores (001): door-sensor traffic at its four resolutions — daily and hourly, per store and per
sensor — from analytics.store_sensor_hourly and its views store_daily, store_hourly and
store_sensor_daily.

A failed reading is never shown as zero traffic: its status is `failed` (or `partly failed`
when some of a store's sensors failed), red with a triangle in the charts, and listed below them.
"""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from dashboard import queries
from dashboard.views.common import count, guarded, no_data, table, traffic_chart

DAY = alt.X("day:O", title="day")
HOUR = alt.X("utcyearmonthdatehours(hour_start):T", title="hour (UTC)")


@guarded
def render() -> None:
    """The Stores page."""
    st.title("Stores")
    st.caption(
        "From `analytics.store_sensor_hourly` (one row per store, sensor and hour) and its views "
        "`store_sensor_daily`, `store_hourly` and `store_daily`."
    )
    totals = queries.read(queries.STORE_TOTALS)
    if totals.empty:
        no_data("analytics.store_sensor_hourly")
        return
    table(totals)

    store = st.selectbox("Store", totals["store"].tolist(), key="store", bind="query-params")
    row = totals[totals["store"] == store].iloc[0]
    cols = st.columns(4)
    cols[0].metric(f"Visits to {store}", count(row["visits"]))
    cols[1].metric("Sensors", count(row["sensors"]))
    cols[2].metric("Failed readings", count(row["failed_readings"]))
    cols[3].metric("Anomalies", count(row["anomalies"]))

    daily = _days(queries.read(queries.STORE_DAILY, {"store": store}))
    _resolution(f"{store} · daily", daily, DAY)
    hourly = queries.read(queries.STORE_HOURLY, {"store": store})
    _resolution(f"{store} · hourly", hourly, HOUR)

    sensors = queries.read(queries.STORE_SENSOR_IDS, {"store": store})["sensor_id"].tolist()
    sensor = st.selectbox(
        f"Sensor of {store}",
        sensors,
        key="sensor_id",
        bind="query-params",
    )
    one = {"store": store, "sensor_id": sensor}
    daily = _days(queries.read(queries.STORE_SENSOR_DAILY, one))
    _resolution(f"{store} sensor {sensor} · daily", daily, DAY)
    hourly = queries.read(queries.STORE_SENSOR_HOURLY, one)
    _resolution(f"{store} sensor {sensor} · hourly", hourly, HOUR)


def _days(rows: pd.DataFrame) -> pd.DataFrame:
    return rows.assign(day=rows["day"].astype(str))


def _resolution(title: str, rows: pd.DataFrame, x: alt.X) -> None:
    """One resolution: its chart, then every row for daily data, or only the hours that are not
    plain `ok` / `zero traffic` for hourly data (a month of hours is too long to list)."""
    st.subheader(title)
    traffic_chart(rows, x)
    if "day" in rows:
        table(rows)
        return
    flagged = rows[~rows["status"].isin(("ok", "zero traffic"))]
    if flagged.empty:
        st.caption("No failed readings or anomalies in these hours.")
        return
    st.caption(f"{len(flagged)} of {len(rows)} hours with failed readings or anomalies:")
    table(flagged)
