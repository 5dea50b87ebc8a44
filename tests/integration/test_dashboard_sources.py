"""The origin sources' pages for real: Fleet, Stores, IoT and Stream, rendered by `streamlit run`
and read by headless Chromium, against a database whose `analytics` tables hold the rows below.

The harness (browser, scratch database, dashboard process, `show`) is test_dashboard.py's.
Screenshots land in `test-output/dashboard/` (fleet.png, stores.png, iot.png, stream.png are the
README's).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import psycopg
import pytest
from selenium import webdriver

from lake_config.settings import Settings
from tests.integration.test_dashboard import (
    NO_DATA,
    _free_port,
    browser,
    dashboard,
    scratch_database,
    show,
)

__all__ = ["browser"]  # the module-scoped fixture, shared with test_dashboard.py

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
# Fleet: six 5-minute snapshots of a 100-machine inventory. Baseline of the last one over the
# previous 4: mean(.86, .92, .90, .90) = .895; drop (.895 - .72) / .895 = 19.55%.
SHARES = [0.90, 0.86, 0.92, 0.90, 0.90, 0.72]
INVENTORY = 100
FLEET_ALERT = "online share 72.0% is 19.6% below its baseline 89.5% (previous 4 snapshots)"
STREAM_SHORT_S = 10
STREAM_LONG_S = 60


def _state(online: int) -> dict[tuple[str, ...], int]:
    sp, rj, mg = online // 2, round(online * 0.28), round(online * 0.14)
    return {("SP",): sp, ("RJ",): rj, ("MG",): mg, ("BA",): online - sp - rj - mg}


def _type(online: int) -> dict[tuple[str, ...], int]:
    atm, cc, pd_ = round(online * 0.55), round(online * 0.25), round(online * 0.12)
    return {("ATM",): atm, ("CC",): cc, ("PD",): pd_, ("PC",): online - atm - cc - pd_}


def _type_os(online: int) -> dict[tuple[str, ...], int]:
    types = _type(online)
    return {
        ("ATM", "Ubuntu", "22.0"): types[("ATM",)] - 10,
        ("ATM", "Windows", "10.0"): 10,
        ("CC", "Ubuntu", "20.0"): types[("CC",)],
        ("PD", "Windows", "11.0"): types[("PD",)],
        ("PC", "Windows", "11.0"): types[("PC",)],
    }


SEGMENTS = {
    "State": (("state",), _state),
    "Type": (("machine_type",), _type),
    "Type and OS and OS_version": (("machine_type", "operating_system", "os_version"), _type_os),
}


def seed_fleet(conn: psycopg.Connection) -> None:
    for i, share in enumerate(SHARES):
        ts = T0 + timedelta(minutes=5 * i)
        online = round(share * INVENTORY)
        conn.execute(
            "insert into analytics.fleet_online (ts, online, reporting, errors, inventory, "
            "online_share) values (%s, %s, %s, 2, %s, %s)",
            (ts, online, online + 5, INVENTORY, share),
        )
        for segment, (dims, split) in SEGMENTS.items():
            for values, n in split(online).items():
                names = [*dims, "", ""][:3]
                padded = [*values, "", ""][:3]
                conn.execute(
                    "insert into analytics.fleet_segments (ts, segment, count, dim1_name, "
                    "dim1_value, dim2_name, dim2_value, dim3_name, dim3_value) "
                    "values (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    (ts, segment, n, names[0], padded[0], names[1], padded[1], names[2], padded[2]),
                )
    alert_id = conn.execute(
        """
        insert into analytics.alerts (raised_at, source, severity, message)
        values (%s, 'fleet-monitor', 'warning', %s)
        returning alert_id
        """,
        (T0 + timedelta(minutes=26), FLEET_ALERT),
    ).fetchone()[0]  # type: ignore[index]
    conn.execute(
        """
        insert into analytics.fleet_monitor (ts, online_share, baseline_share, drop_fraction,
            threshold, history, breached, alert_id, checked_at)
        values (%s, 0.90, 0.895, -0.005586592178770949, 0.15, 4, false, null, %s),
               (%s, 0.72, 0.895, 0.19553072625698323, 0.15, 4, true, %s, %s)
        """,
        (
            T0 + timedelta(minutes=20),
            T0 + timedelta(minutes=21),
            T0 + timedelta(minutes=25),
            alert_id,
            T0 + timedelta(minutes=26),
        ),
    )
    # Not a fleet alert: the Fleet page must leave it out.
    conn.execute(
        "insert into analytics.alerts (source, dag_id, task_id, severity, message) "
        "values ('airflow', 'telemetry_lake', 'silver', 'critical', 'SparkError: boom')"
    )


def seed_stores(conn: psycopg.Connection) -> None:
    """Paris: sensor 1 counts 100 an open hour (8-17 UTC), sensor 2 50; Madrid's one sensor 30.
    Closed hours (7, 18) count zero. On 11-19 Paris sensor 1 failed at 12:00 and saw an anomaly
    (10) at 15:00, and Madrid's sensor failed at 09:00."""
    per_hour = {("Paris", 1): 100, ("Paris", 2): 50, ("Madrid", 1): 30}
    for day in (datetime(2026, 11, 18, tzinfo=UTC), datetime(2026, 11, 19, tzinfo=UTC)):
        for (store, sensor), visits in per_hour.items():
            for hour in range(7, 19):
                start = day + timedelta(hours=hour)
                count: int | None = visits if 8 <= hour <= 17 else 0
                anomaly = False
                if day.day == 19 and (store, sensor, hour) in {("Paris", 1, 12), ("Madrid", 1, 9)}:
                    count = None
                if day.day == 19 and (store, sensor, hour) == ("Paris", 1, 15):
                    count, anomaly = 10, True
                conn.execute(
                    "insert into analytics.store_sensor_hourly (store, sensor_id, hour_start, "
                    "visits, failed, anomaly) values (%s, %s, %s, %s, %s, %s)",
                    (store, sensor, start, count, count is None, anomaly),
                )


IOT = {
    # device: (type, unit, location, minute averages, out of range per minute)
    "temp-kitchen": ("temperature", "celsius", "Kitchen", [21.0, 21.2, 21.5, 22.0, 22.3],
                     [0, 0, 2, 1, 0]),
    "temp-entrance": ("temperature", "celsius", "Main Entrance", [15.0, 15.5, 16.0, 16.5, 17.0],
                      [0] * 5),
    "hum-office": ("humidity", "percent", "Offices", [40.0, 41.0, 42.0, 43.0, 44.0],
                   [0, 0, 0, 0, 5]),
}  # fmt: skip


def seed_iot(conn: psycopg.Connection) -> None:
    """60 readings a minute; min = avg - 1, max = avg + 1.5."""
    for device, (kind, unit, location, avgs, out) in IOT.items():
        for i, (avg, bad) in enumerate(zip(avgs, out, strict=True)):
            conn.execute(
                "insert into analytics.iot_sensor_minute (device_id, minute_start, readings, "
                "avg_value, min_value, max_value, out_of_range, unit, type, location) "
                "values (%s, %s, 60, %s, %s, %s, %s, %s, %s, %s)",
                (
                    device,
                    T0 + timedelta(minutes=i),
                    avg,
                    avg - 1,
                    avg + 1.5,
                    bad,
                    unit,
                    kind,
                    location,
                ),
            )


STREAMS = {
    "s-1": [10.0, 20.0, 30.0, 40.0, 50.0, 60.0],
    "s-2": [100.0, 90.0, 80.0, 70.0, 60.0, 50.0],
}


def _rolling(values: list[tuple[datetime, float]], at: datetime, window_s: int) -> float:
    """Mean of the values in (at - window, at], as gold.stream_rolling defines its windows."""
    inside = [v for t, v in values if at - timedelta(seconds=window_s) < t <= at]
    return sum(inside) / len(inside)


def seed_stream(conn: psycopg.Connection) -> None:
    """One message every 5 s per stream, both streams in the same seconds. Latest of s-1: value
    60, short mean(50, 60) = 55, long mean(10..60) = 35; of s-2: 50, 55, 75."""
    for stream, values in STREAMS.items():
        timed = [(T0 + timedelta(seconds=5 * i), v) for i, v in enumerate(values)]
        for i, (at, value) in enumerate(timed):
            conn.execute(
                "insert into analytics.stream_rolling (event_id, device_id, occurred_at, value, "
                "rolling_avg_short, rolling_avg_long) values (%s, %s, %s, %s, %s, %s)",
                (
                    f"{stream}-m{i}",
                    stream,
                    at,
                    value,
                    _rolling(timed, at, STREAM_SHORT_S),
                    _rolling(timed, at, STREAM_LONG_S),
                ),
            )


def seed(cfg: Settings) -> None:
    with psycopg.connect(cfg.database_url, autocommit=True) as conn:
        seed_fleet(conn)
        seed_stores(conn)
        seed_iot(conn)
        seed_stream(conn)


# --- tests ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sources_url(settings: Settings) -> Iterator[str]:
    with scratch_database(settings, "dash_sources") as cfg:
        seed(cfg)
        run = cfg.model_copy(
            update={
                "monitor_history": 4,
                "monitor_drop_threshold": 0.15,
                "stream_rolling_short_s": STREAM_SHORT_S,
                "stream_rolling_long_s": STREAM_LONG_S,
            }
        )
        with dashboard(run, "sources") as url:
            yield url


def test_fleet_page_shows_the_monitor_and_breakouts(
    browser: webdriver.Chrome, sources_url: str
) -> None:
    text = show(
        browser,
        f"{sources_url}/fleet",
        [
            "Online share vs baseline",
            "Online share over time",
            "Segment breakouts",
            "Top 5 values per segment",
            "Fleet alerts",
        ],
        "fleet",
    )
    # The latest snapshot (.72) against the mean of the previous 4 (.895): a 19.6% drop > 15%.
    assert "Latest online\n72.0%" in text
    assert "Baseline (previous 4)\n89.5%" in text
    assert "Drop\n19.6%" in text
    assert "Machines online\n72 of 100" in text
    assert (
        "Alert: online share dropped below the threshold. 72.0% online at 2026-11-20 10:25 UTC "
        "against a baseline of 89.5%: a drop of 19.6% (threshold 15%)." in text
    )
    # Snapshots newest first: online, reporting, errors, inventory, online %, baseline %, drop %.
    assert "2026-11-20 10:25:00\n72\n77\n2\n100\n72.0\n89.5\n19.6\nTrue" in text
    # The first snapshot has no baseline: blank, not zero.
    assert re.search(r"2026-11-20 10:00:00\n90\n95\n2\n100\n90\.0\n\s*False\n", text)
    # Breakouts: State and Type by default, top 5, share of the snapshot's machines online.
    assert (
        "State\nSP\n36\n50.0\nState\nRJ\n20\n27.8\nState\nMG\n10\n13.9\nState\nBA\n6\n8.3" in text
    )
    assert "Type\nATM\n40\n55.6\nType\nCC\n18\n25.0" in text
    # What tlake monitor recorded, and only the fleet's alert.
    assert "2026-11-20 10:25:00\nTrue\n72.0\n89.5\n19.6\n15.0\n4\n1\n2026-11-20 10:26:00" in text
    assert f"warning\nfleet-monitor\n{FLEET_ALERT}" in text
    assert "SparkError" not in text


def test_fleet_controls_follow_the_query_parameters(
    browser: webdriver.Chrome, sources_url: str
) -> None:
    text = show(
        browser,
        f"{sources_url}/fleet?history=1&threshold=25&segments=Type"
        "&segments=Type+and+OS+and+OS_version&top=2&show=counts",
        ["Within threshold.", "Top 2 values per segment"],
        "fleet_controls",
    )
    # Baseline = the previous snapshot only (.90): a 20.0% drop, under a 25% threshold.
    assert "Baseline (previous 1)\n90.0%" in text
    assert "Drop\n20.0%" in text
    assert "a drop of 20.0% (threshold 25%)" in text
    assert "Type\nATM\n40\n55.6\nType\nCC\n18\n25.0\n" in text
    assert (
        "Type and OS and OS_version\nATM / Ubuntu / 22.0\n30\n41.7\n"
        "Type and OS and OS_version\nCC / Ubuntu / 20.0\n18\n25.0" in text
    )
    assert "\nState\nSP" not in text
    assert "PD / Windows / 11.0" not in text
    # Raw counts on the y axis.
    assert "machines online" in text
    assert "share of online (%)" not in text


def test_stores_page_shows_four_resolutions_and_failed_readings(
    browser: webdriver.Chrome, sources_url: str
) -> None:
    text = show(
        browser,
        f"{sources_url}/stores",
        [
            "Paris · daily",
            "Paris · hourly",
            "Paris sensor 1 · daily",
            "Paris sensor 1 · hourly",
        ],
        "stores",
    )
    # All stores, busiest first: sensors, days, visits, readings ok, failed, anomalies.
    assert "Paris\n2\n2\n2,810\n47\n1\n1\n2026-11-18\n2026-11-19" in text
    assert "Madrid\n1\n2\n570\n23\n1\n0" in text
    assert "Visits to Paris\n2,810" in text
    # Store daily: 1,500 = 10 open hours x (100 + 50); 11-19 lost one reading, one anomaly.
    assert "2026-11-18\n1,500\n24\n0\n0\nok\n2026-11-19\n1,310\n23\n1\n1\npartly failed" in text
    # Store hourly: the failed hour keeps sensor 2's count, flagged, not zero.
    assert "2 of 24 hours with failed readings or anomalies:" in text
    assert "2026-11-19 12:00:00\n50\n1\n1\n0\npartly failed" in text
    assert "2026-11-19 15:00:00\n60\n2\n0\n1\nanomaly" in text
    # Sensor 1: daily 810 = 8 x 100 + 10; the failed hour has no count at all.
    assert "2026-11-19\n810\n11\n1\n1\npartly failed" in text
    assert re.search(r"2026-11-19 12:00:00\n\s*failed\n2026-11-19 15:00:00\n10\nanomaly", text)


def test_store_and_sensor_pickers_follow_the_query_parameters(
    browser: webdriver.Chrome, sources_url: str
) -> None:
    text = show(
        browser, f"{sources_url}/stores?store=Madrid", ["Madrid sensor 1 · hourly"], "stores_madrid"
    )
    assert "Visits to Madrid\n570" in text
    # Madrid's only sensor failed at 09:00: nothing counted, shown as failed, not as zero traffic.
    assert re.search(r"2026-11-19 09:00:00\n\s*0\n1\n0\nfailed", text)  # store level
    assert re.search(r"2026-11-19 09:00:00\n\s*failed", text)  # sensor level
    text = show(
        browser, f"{sources_url}/stores?sensor_id=2", ["Paris sensor 2 · daily"], "stores_sensor"
    )
    assert "2026-11-18\n500\n12\n0\n0\nok\n2026-11-19\n500\n12\n0\n0\nok" in text
    assert "No failed readings or anomalies in these hours." in text


def test_iot_page_shows_minute_stats_and_out_of_range(
    browser: webdriver.Chrome, sources_url: str
) -> None:
    text = show(
        browser,
        f"{sources_url}/iot?sensor=temp-kitchen",
        [
            "Per sensor (all minutes)",
            "Minute average per sensor",
            "Latest 30 minutes of temp-kitchen",
        ],
        "iot",
    )
    assert "Sensors\n3" in text
    assert "Sensor-minutes\n15" in text
    assert "Readings\n900" in text
    assert "Out of range\n8 (0.89%)" in text
    # minutes, readings, avg (weighted), min, max, out of range, out-of-range %.
    assert "temp-kitchen\ntemperature\ncelsius\nKitchen\n5\n300\n21.6\n20.0\n23.8\n3\n1.0\n" in text
    assert "hum-office\nhumidity\npercent\nOffices\n5\n300\n42.0\n39.0\n45.5\n5\n1.7" in text
    # temp-kitchen's minutes, newest first: readings, avg, min, max, out of range.
    assert "2026-11-20 10:02:00\n60\n21.5\n20.5\n23.0\n2" in text


def test_iot_filters_by_type(browser: webdriver.Chrome, sources_url: str) -> None:
    text = show(
        browser, f"{sources_url}/iot?type=humidity", ["Latest 30 minutes of hum-office"], "iot_type"
    )
    assert "Sensors\n1" in text
    assert "Out of range\n5 (1.67%)" in text
    assert "temp-kitchen\ntemperature" not in text
    assert "2026-11-20 10:04:00\n60\n44.0\n43.0\n45.5\n5" in text


def test_stream_page_shows_rolling_averages_melt_and_pivot(
    browser: webdriver.Chrome, sources_url: str
) -> None:
    text = show(
        browser,
        f"{sources_url}/stream",
        ["Stream s-1", "Stream s-2", "Melted", "Pivot"],
        "stream",
    )
    assert "short (10 s) and long (60 s) windows" in text
    assert (
        "Stream s-1\nMessages\n6\nLatest value\n60.0\nShort rolling avg\n55.0\n"
        "Long rolling avg\n35.0" in text
    )
    assert (
        "Stream s-2\nMessages\n6\nLatest value\n50.0\nShort rolling avg\n55.0\n"
        "Long rolling avg\n75.0" in text
    )
    # Melted: one row per message and variable, newest first.
    assert (
        "2026-11-20 10:00:25\ns-1\ns-1-m5\nrolling_avg_long\n35.0\n"
        "2026-11-20 10:00:25\ns-1\ns-1-m5\nrolling_avg_short\n55.0\n"
        "2026-11-20 10:00:25\ns-1\ns-1-m5\nvalue\n60.0\n"
        "2026-11-20 10:00:25\ns-2\ns-2-m5\nrolling_avg_long\n75.0\n" in text
    )
    # Pivot: per second and variable, one column per stream.
    assert "ts\nvariable\ns-1\ns-2\n2026-11-20 10:00:25\nrolling_avg_long\n35.0\n75.0\n" in text
    assert "2026-11-20 10:00:20\nvalue\n50.0\n60.0\n" in text


def test_empty_database_gets_hints_on_every_source_page(
    browser: webdriver.Chrome, settings: Settings
) -> None:
    with (
        scratch_database(settings, "dash_sources_empty") as cfg,
        dashboard(cfg, "sources_empty") as url,
    ):
        for page, table in [
            ("fleet", "analytics.fleet_online"),
            ("stores", "analytics.store_sensor_hourly"),
            ("iot", "analytics.iot_sensor_minute"),
            ("stream", "analytics.stream_rolling"),
        ]:
            text = show(browser, f"{url}/{page}", [f"{NO_DATA} to fill {table}."], f"empty_{page}")
            assert "Query failed" not in text


def test_fleet_segments_and_monitor_can_be_empty_on_their_own(
    browser: webdriver.Chrome, settings: Settings
) -> None:
    """Snapshots but no segments, verdicts or alerts yet: each section says so by itself."""
    with scratch_database(settings, "dash_fleet_partial") as cfg:
        with psycopg.connect(cfg.database_url, autocommit=True) as conn:
            conn.execute(
                "insert into analytics.fleet_online (ts, online, reporting, errors, inventory, "
                "online_share) values (%s, 40, 40, 0, 50, 0.8)",
                (T0,),
            )
        with dashboard(cfg, "fleet_partial") as url:
            text = show(browser, f"{url}/fleet", ["Fleet alerts"], "fleet_partial")
    assert "Latest online\n80.0%" in text
    assert "Only one snapshot so far (2026-11-20 10:00 UTC)" in text
    assert f"{NO_DATA} to fill analytics.fleet_segments." in text
    assert "tlake monitor has not recorded a verdict yet" in text
    assert "No fleet alert recorded" in text


def test_database_down_shows_an_error_box_on_source_pages(
    browser: webdriver.Chrome, settings: Settings
) -> None:
    port = _free_port()  # nothing listens there
    url = urlsplit(settings.database_url)._replace(netloc=f"postgres@127.0.0.1:{port}").geturl()
    with dashboard(settings.model_copy(update={"database_url": url}), "sources_down") as base:
        for page in ("fleet", "stores", "iot", "stream"):
            text = show(browser, f"{base}/{page}", ["Database unavailable."], f"down_{page}")
            assert f"cannot reach PostgreSQL at postgresql://postgres@127.0.0.1:{port}/" in text
