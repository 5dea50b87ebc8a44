"""IoT (002): one-minute statistics per sensor (avg, min, max, readings, out of range) from
analytics.iot_sensor_minute, filtered by type, unit and sensor as 002's `/data/summary/` was.
"""

from __future__ import annotations

import streamlit as st

from dashboard import queries
from dashboard.views.common import count, guarded, no_data, table

DETAIL_MINUTES = 30


@guarded
def render() -> None:
    """The IoT page."""
    st.title("IoT sensors")
    st.caption(
        "From `analytics.iot_sensor_minute`: one row per sensor and minute (readings, average, "
        "minimum, maximum, and readings outside the sensor's declared range)."
    )
    sensors = queries.read(queries.IOT_SENSORS)
    if sensors.empty:
        no_data("analytics.iot_sensor_minute")
        return

    cols = st.columns(3)
    types = cols[0].multiselect(
        "Type", sorted(sensors["type"].unique()), key="type", bind="query-params"
    )
    units = cols[1].multiselect(
        "Unit", sorted(sensors["unit"].unique()), key="unit", bind="query-params"
    )
    devices = cols[2].multiselect(
        "Sensors", sensors["device_id"].tolist(), key="sensors", bind="query-params"
    )
    summary = queries.read(
        queries.IOT_SUMMARY, {"devices": devices, "types": types, "units": units}
    )
    if summary.empty:
        st.info("No sensor matches these filters.")
        return

    readings = int(summary["readings"].sum())
    out_of_range = int(summary["out_of_range"].sum())
    metrics = st.columns(4)
    metrics[0].metric("Sensors", count(len(summary)))
    metrics[1].metric("Sensor-minutes", count(summary["minutes"].sum()))
    metrics[2].metric("Readings", count(readings))
    metrics[3].metric(
        "Out of range", f"{count(out_of_range)} ({100 * out_of_range / readings:.2f}%)"
    )
    st.subheader("Per sensor (all minutes)")
    table(summary)

    window = int(
        st.slider(
            "Minutes shown",
            min_value=5,
            max_value=1440,
            value=120,
            step=5,
            key="minutes",
            bind="query-params",
        )
    )
    shown = summary["device_id"].tolist()
    minutes = queries.read(queries.IOT_MINUTES, {"devices": shown, "minutes": window})
    left, right = st.columns(2)
    with left:
        st.subheader("Minute average per sensor")
        st.line_chart(minutes, x="minute_start", y="avg_value", color="device_id", x_label="minute")
    with right:
        st.subheader("Out-of-range readings per minute")
        st.bar_chart(
            minutes, x="minute_start", y="out_of_range", color="device_id", x_label="minute"
        )

    st.subheader("One sensor")
    device = st.selectbox("Sensor", shown, key="sensor", bind="query-params")
    one = queries.read(queries.IOT_MINUTES, {"devices": [device], "minutes": window})
    st.line_chart(
        one, x="minute_start", y=["avg_value", "min_value", "max_value"], x_label="minute"
    )
    st.caption(f"Latest {DETAIL_MINUTES} minutes of {device}, newest first.")
    table(one.drop(columns="device_id").iloc[::-1].head(DETAIL_MINUTES))
