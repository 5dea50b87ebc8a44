"""Pipeline health: the registry's raw objects, runs and quarantine; data quality; alerts."""

from __future__ import annotations

import streamlit as st

from dashboard import queries
from dashboard.views.common import age, count, guarded, no_data, table


@guarded
def render() -> None:
    """The Pipeline health page."""
    st.title("Pipeline health")
    _raw_objects()
    _runs()
    _quarantine()
    _data_quality()
    _alerts()


def _raw_objects() -> None:
    st.subheader("Raw objects by status")
    by_status = queries.read(queries.RAW_OBJECTS_BY_STATUS)
    if int(by_status["objects"].sum()) == 0:
        no_data("registry.raw_objects")
        return
    pending = queries.read(queries.OLDEST_PENDING).iloc[0]
    cols = st.columns(len(by_status) + 1)
    for col, row in zip(cols, by_status.itertuples(), strict=False):
        col.metric(str(row.status).capitalize(), count(row.objects))
    oldest = "none" if int(pending["pending_objects"]) == 0 else age(pending["oldest_age_s"])
    cols[-1].metric("Oldest pending", oldest)
    table(by_status)
    st.caption("By source:")
    table(queries.read(queries.RAW_OBJECTS_BY_SOURCE))


def _runs() -> None:
    st.subheader(f"Recent pipeline runs (last {queries.RECENT_RUNS} stages)")
    runs = queries.read(queries.RECENT_PIPELINE_RUNS, {"limit": queries.RECENT_RUNS})
    if runs.empty:
        no_data("registry.pipeline_runs")
        return
    table(runs)


def _quarantine() -> None:
    st.subheader("Quarantine by reason")
    totals = queries.read(queries.QUARANTINE_TOTALS).iloc[0]
    if int(totals["events"]) == 0:
        st.info("Nothing quarantined: every event so far passed validation.")
        return
    st.caption(
        f"{count(totals['events'])} quarantined events, {count(totals['replayed'])} replayed."
    )
    left, right = st.columns(2)
    with left:
        st.caption("By reason field (an event can fail on several):")
        table(queries.read(queries.QUARANTINE_BY_FIELD))
    with right:
        st.caption("By source and rejecting component:")
        table(queries.read(queries.QUARANTINE_BY_SOURCE))


def _data_quality() -> None:
    st.subheader("Data quality (latest result per table and rule)")
    if not queries.dq_results_exist():
        st.info(
            "`analytics.dq_results` does not exist yet: apply the latest migrations "
            "(`make up`) to record data-quality results."
        )
        return
    results = queries.read(queries.LATEST_DQ_RESULTS)
    if results.empty:
        no_data("analytics.dq_results")
        return
    table(results)


def _alerts() -> None:
    st.subheader(f"Alerts (last {queries.RECENT_ALERTS})")
    if not queries.alerts_exist():
        st.info(
            "`analytics.alerts` does not exist yet: apply the latest migrations "
            "(`make up`) to record alerts (failed DAG tasks, the fleet monitor)."
        )
        return
    alerts = queries.read(queries.RECENT_DAG_ALERTS, {"limit": queries.RECENT_ALERTS})
    if alerts.empty:
        st.info("No alerts: no DAG task has failed for good and the fleet monitor is quiet.")
        return
    table(alerts)
