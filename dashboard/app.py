"""The dashboard's entry point (`make dashboard`): wires the pages, nothing else."""

from __future__ import annotations

import streamlit as st

from dashboard.views import devices, fleet, iot, pipeline_health, stores, stream

st.set_page_config(page_title="Telemetry Lake", layout="wide")
page = st.navigation(
    [
        st.Page(devices.render, title="Devices", url_path="devices", default=True),
        st.Page(fleet.render, title="Fleet", url_path="fleet"),
        st.Page(stores.render, title="Stores", url_path="stores"),
        st.Page(iot.render, title="IoT", url_path="iot"),
        st.Page(stream.render, title="Stream", url_path="stream"),
        st.Page(pipeline_health.render, title="Pipeline health", url_path="pipeline_health"),
    ]
)
page.run()
