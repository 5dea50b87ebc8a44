"""What every page shows the same way: the empty-table hint, error boxes, number formats."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

import altair as alt
import pandas as pd
import streamlit as st

from dashboard.errors import DashboardError, DatabaseUnavailableError

NO_DATA = "No data yet — run `make demo`"


def no_data(what: str) -> None:
    """The friendly hint an empty table gets instead of an empty chart."""
    st.info(f"{NO_DATA} to fill {what}.")


def guarded(render: Callable[[], None]) -> Callable[[], None]:
    """Show a dashboard error in an error box instead of a stack trace."""

    @wraps(render)
    def page() -> None:
        try:
            render()
        except DatabaseUnavailableError as exc:
            st.error(f"**Database unavailable.** {exc}\n\nStart the stack with `make up`.")
        except DashboardError as exc:
            st.error(f"**Query failed.** {exc}")

    return page


def count(value: object) -> str:
    """12345 -> '12,345'; thousands separators so totals read at a glance."""
    return f"{int(value):,}"  # type: ignore[call-overload]


def age(seconds: float) -> str:
    """A duration in its largest sensible unit: '42 s', '7.5 min', '3.2 h', '2.0 d'."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def pct(fraction: float) -> str:
    """0.7234 -> '72.3%'."""
    return f"{100 * fraction:.1f}%"


def table(rows: pd.DataFrame) -> None:
    """A static table (all rows in the page, so its text is searchable): integers with thousands
    separators, other numbers to one decimal (a float stays a float, even when whole), times to
    the second (UTC), missing values blank, no index."""
    shown = rows.reset_index(drop=True)
    for column in shown.select_dtypes(include=["datetime", "datetimetz"]).columns:
        shown[column] = shown[column].dt.strftime("%Y-%m-%d %H:%M:%S")
    shown = shown.convert_dtypes(convert_integer=False)
    styled = shown.style.format(precision=1, thousands=",", na_rep="")
    st.table(styled.hide(axis="index"))


def hour_labels(rows: pd.DataFrame) -> pd.DataFrame:
    """`rows` with an `hour` label column ('11-23 14:00'), so bar charts get one wide bar per
    hour instead of a hairline on a time axis."""
    return rows.assign(hour=rows["hour_start"].dt.strftime("%m-%d %H:00"))


# A failed reading is red and marked with a triangle, so it never reads as a closed store's zero.
STATUS_COLORS = {
    "ok": "#4c78a8",
    "zero traffic": "#bab0ac",
    "anomaly": "#f58518",
    "partly failed": "#b279a2",
    "failed": "#e45756",
}
FAILED = ("failed", "partly failed")


def traffic_chart(rows: pd.DataFrame, x: alt.X) -> None:
    """Visits as bars coloured by `status` (see STATUS_COLORS); hours or days with failed readings
    also get a triangle at the top of their bar (at zero when nothing was counted)."""
    shown = rows.assign(
        visits=rows["visits"].astype("float64").fillna(0), failed=rows["status"].isin(FAILED)
    )
    color = alt.Color(
        "status:N",
        scale=alt.Scale(domain=list(STATUS_COLORS), range=list(STATUS_COLORS.values())),
        legend=alt.Legend(orient="bottom", title=None),
    )
    base = alt.Chart(shown).encode(x=x, y=alt.Y("visits:Q", title="visits"), color=color)
    bars = base.mark_bar().encode(tooltip=[x.shorthand, "visits:Q", "status:N"])
    marks = base.transform_filter(alt.datum.failed).mark_point(
        shape="triangle-down", filled=True, size=220, opacity=1, strokeWidth=1, stroke="white"
    )
    st.altair_chart(bars + marks, width="stretch")
