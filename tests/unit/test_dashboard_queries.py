"""The dashboard's queries follow the SQL house style, and its number formats read well."""

from __future__ import annotations

import re

import pytest

from dashboard import queries
from dashboard.views.common import age, count

QUERIES = {
    name: value
    for name, value in vars(queries).items()
    if name.isupper() and isinstance(value, str) and "select" in value
}


def test_every_page_query_is_declared() -> None:
    assert set(QUERIES) == {
        "DEVICE_TOTALS",
        "EVENTS_BY_HOUR",
        "TOP_DEVICES_BY_EVENTS",
        "DEVICE_IDS",
        "DEVICE_HOURS",
        "RAW_OBJECTS_BY_STATUS",
        "OLDEST_PENDING",
        "RECENT_PIPELINE_RUNS",
        "QUARANTINE_BY_FIELD",
        "QUARANTINE_TOTALS",
        "DQ_RESULTS_EXISTS",
        "LATEST_DQ_RESULTS",
        "ALERTS_EXIST",
        "RECENT_DAG_ALERTS",
    }


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_query_is_lowercase_ctes_ending_in_select_from_final(name: str) -> None:
    text = QUERIES[name]
    code = re.sub(r"'[^']*'", "''", text)  # string literals may hold anything
    assert code == code.lower(), f"{name} has uppercase SQL"
    assert code.lstrip().startswith("with "), f"{name} does not start with a CTE"
    assert "\nselect * from final" in code, f"{name} does not end in `select * from final`"
    assert "analytics." in code or "registry." in code or "to_regclass" in code


def test_reads_only_the_analytics_and_registry_schemas() -> None:
    schemas = {
        m.group(1) for text in QUERIES.values() for m in re.finditer(r"from (\w+)\.\w+", text)
    }
    assert schemas == {"analytics", "registry"}


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(42, "42 s"), (450, "7.5 min"), (11_520, "3.2 h"), (172_800, "2.0 d")],
)
def test_age_uses_the_largest_sensible_unit(seconds: float, shown: str) -> None:
    assert age(seconds) == shown


def test_count_has_thousands_separators() -> None:
    assert count(2057) == "2,057"
