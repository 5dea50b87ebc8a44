"""Devices: analytics.device_hourly (one row per device and hour) as totals, charts and tables.

The device picker follows the `?device=` query parameter, so a link can open one device.
"""

from __future__ import annotations

import streamlit as st

from dashboard import queries
from dashboard.views.common import count, guarded, hour_labels, no_data, table


@guarded
def render() -> None:
    """The Devices page."""
    st.title("Devices")
    st.caption("From `analytics.device_hourly`: one row per device and hour, upserted by gold.")
    totals = queries.read(queries.DEVICE_TOTALS).iloc[0]
    if int(totals["device_hours"]) == 0:
        no_data("analytics.device_hourly")
        return

    cols = st.columns(5)
    cols[0].metric("Devices", count(totals["devices"]))
    cols[1].metric("Device-hours", count(totals["device_hours"]))
    cols[2].metric("Events", count(totals["events"]))
    cols[3].metric("Sessions", count(totals["sessions"]))
    cols[4].metric("Crash events", count(totals["crash_events"]))
    st.caption(
        f"Hours from {totals['first_hour_start']:%Y-%m-%d %H:%M} "
        f"to {totals['last_hour_start']:%Y-%m-%d %H:%M} (UTC)."
    )

    by_hour = hour_labels(queries.read(queries.EVENTS_BY_HOUR))
    left, right = st.columns(2)
    with left:
        st.subheader("Events per hour")
        st.bar_chart(by_hour, x="hour", y="events", y_label="events")
    with right:
        st.subheader("Battery by hour")
        st.line_chart(
            by_hour,
            x="hour_start",
            y=["avg_battery_pct", "min_battery_pct"],
            x_label="hour",
            y_label="battery %",
        )

    st.subheader(f"Top {queries.TOP_DEVICES} busiest devices")
    top = queries.read(queries.TOP_DEVICES_BY_EVENTS, {"limit": queries.TOP_DEVICES})
    table(top)

    st.subheader("One device")
    device_ids = queries.read(queries.DEVICE_IDS)["device_id"].tolist()
    wanted = st.query_params.get("device")
    index = device_ids.index(wanted) if wanted in device_ids else 0
    device_id = st.selectbox("Device", device_ids, index=index)
    st.query_params["device"] = device_id
    hours = hour_labels(queries.read(queries.DEVICE_HOURS, {"device_id": device_id}))
    device_cols = st.columns(3)
    device_cols[0].metric(f"Events of {device_id}", count(hours["events"].sum()))
    device_cols[1].metric("Hours active", count(len(hours)))
    device_cols[2].metric("Crash events", count(hours["crash_events"].sum()))
    st.bar_chart(hours, x="hour", y="events", y_label="events")
    st.dataframe(hours.drop(columns="hour"), hide_index=True)
