"""The dashboard's queries follow the SQL house style, and its number formats read well."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pandas as pd
import pytest

from dashboard import queries
from dashboard.views.common import STATUS_COLORS, age, count, pct
from dashboard.views.stream import _spread

VIEWS = Path(queries.__file__).parent / "views"
PLACEHOLDER = re.compile(r"%\((\w+)\)s")

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
        "FLEET_ONLINE_SERIES",
        "FLEET_MONITOR_RECENT",
        "FLEET_ALERTS",
        "FLEET_SEGMENT_NAMES",
        "FLEET_SEGMENT_SERIES",
        "STORE_TOTALS",
        "STORE_SENSOR_IDS",
        "STORE_DAILY",
        "STORE_HOURLY",
        "STORE_SENSOR_DAILY",
        "STORE_SENSOR_HOURLY",
        "IOT_SENSORS",
        "IOT_SUMMARY",
        "IOT_MINUTES",
        "STREAM_TOTALS",
        "STREAM_SERIES",
        "STREAM_MELTED",
        "STREAM_PIVOT",
        "RAW_OBJECTS_BY_STATUS",
        "RAW_OBJECTS_BY_SOURCE",
        "OLDEST_PENDING",
        "RECENT_PIPELINE_RUNS",
        "QUARANTINE_BY_FIELD",
        "QUARANTINE_BY_SOURCE",
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


def test_pct_has_one_decimal() -> None:
    assert pct(0.7234) == "72.3%"
    assert pct(0.15) == "15.0%"


def _read_calls() -> list[tuple[str, str, set[str] | None]]:
    """(view file, query name, parameter names or None) of every `queries.read(queries.X, ...)`."""
    calls = []
    for path in sorted(VIEWS.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "read"
            ):
                continue
            query = node.args[0]
            assert isinstance(query, ast.Attribute), f"{path.name}: read() of a non-declared query"
            params = None
            if len(node.args) > 1:
                params = _keys(tree, node.args[1])
            calls.append((path.name, query.attr, params))
    return calls


def _keys(tree: ast.Module, arg: ast.expr) -> set[str]:
    """The keys of a literal dict, or of the dict literal last assigned to the named variable."""
    if isinstance(arg, ast.Name):
        assigned = [
            node.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == arg.id for t in node.targets)
        ]
        assert len(assigned) == 1, f"{arg.id} assigned {len(assigned)} times"
        arg = assigned[0]
    assert isinstance(arg, ast.Dict), f"parameters are not a dict literal: {ast.dump(arg)}"
    return {k.value for k in arg.keys if isinstance(k, ast.Constant)}


def test_views_pass_exactly_the_parameters_each_query_names() -> None:
    calls = _read_calls()
    # The two existence checks are read by helpers in queries.py itself.
    assert {name for _, name, _ in calls} == set(QUERIES) - {"DQ_RESULTS_EXISTS", "ALERTS_EXIST"}
    for view, name, params in calls:
        wanted = set(PLACEHOLDER.findall(QUERIES[name]))
        assert (params or set()) == wanted, f"{view}: {name} takes {wanted}, given {params}"


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_parameterised_queries_escape_every_other_percent(name: str) -> None:
    """psycopg reads `%` as a placeholder once parameters are passed: a literal one is `%%`."""
    text = QUERIES[name]
    if not PLACEHOLDER.search(text):
        assert "%%" not in text, f"{name} has no parameters: `%%` would reach PostgreSQL"
        return
    leftover = PLACEHOLDER.sub("", text).replace("%%", "")
    assert "%" not in leftover, f"{name} has a bare %"


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_list_filters_are_typed_arrays(name: str) -> None:
    """An empty Python list has no element type; `::text[]` gives it one (and `any()` a type)."""
    for param in re.findall(r"any\(%\((\w+)\)s([^)]*)\)", QUERIES[name]):
        assert param[1] == "::text[]", f"{name}: any(%({param[0]})s) is not cast to text[]"
    for param in re.findall(r"cardinality\(%\((\w+)\)s([^)]*)\)", QUERIES[name]):
        assert param[1] == "::text[]", f"{name}: cardinality(%({param[0]})s) is not cast"


def test_every_store_status_has_a_colour() -> None:
    """The traffic charts colour bars by `status`; a status without a colour would vanish."""
    statuses = {
        literal
        for name in ("STORE_DAILY", "STORE_HOURLY", "STORE_SENSOR_DAILY", "STORE_SENSOR_HOURLY")
        for literal in re.findall(r"(?:then|else) '([^']+)'", QUERIES[name])
    }
    assert statuses == set(STATUS_COLORS)


def test_pivot_spreads_streams_into_sorted_float_columns() -> None:
    pivot = pd.DataFrame(
        {
            "ts": ["t1", "t1"],
            "variable": ["value", "rolling_avg_long"],
            "by_stream": [{"s-2": 50, "s-1": 60.5}, {"s-1": 35}],
        }
    )
    spread = _spread(pivot)
    assert list(spread.columns) == ["ts", "variable", "s-1", "s-2"]
    assert spread["s-1"].tolist() == [60.5, 35.0]
    assert spread["s-2"].iloc[0] == 50.0
    assert pd.isna(spread["s-2"].iloc[1])
