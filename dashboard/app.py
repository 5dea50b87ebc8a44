"""The dashboard's entry point (`make dashboard`): wires the pages, nothing else."""

from __future__ import annotations

import streamlit as st

from dashboard.views import devices, pipeline_health

st.set_page_config(page_title="Telemetry Lake", layout="wide")
page = st.navigation(
    [
        st.Page(devices.render, title="Devices", url_path="devices", default=True),
        st.Page(pipeline_health.render, title="Pipeline health", url_path="pipeline_health"),
    ]
)
page.run()
