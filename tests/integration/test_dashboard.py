"""The dashboard for real: `streamlit run dashboard/app.py` on a loopback port, driven by headless
Chromium through selenium, against PostgreSQL databases seeded with plain SQL.

Each scenario gets a database of its own (migrations applied, dropped afterwards), so totals do
not depend on what other tests wrote into the session's database. Screenshots of every page land
in `test-output/dashboard/`.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
from psycopg.types.json import Jsonb
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from lake_config.registry import apply_migrations, drop_database, ensure_database
from lake_config.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "test-output" / "dashboard"
STREAMLIT = Path(sys.executable).parent / "streamlit"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# The machine may be loaded: Streamlit starts, reruns and draws charts asynchronously.
START_TIMEOUT_S = 120
RENDER_TIMEOUT_S = 90
NO_DATA = "No data yet — run make demo"


# --- fixtures and helpers ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not Path(path).exists()]
    if missing:
        pytest.fail(
            f"{missing} missing: the dashboard tests need Debian's browser, "
            "`apt-get install -y chromium chromium-driver` (`make test` installs it)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(START_TIMEOUT_S)
    OUTPUT.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _with_database(settings: Settings, name: str) -> Settings:
    url = urlsplit(settings.database_url)._replace(path=f"/{name}").geturl()
    return settings.model_copy(update={"database_url": url})


@contextmanager
def scratch_database(settings: Settings, suffix: str) -> Iterator[Settings]:
    """A database of its own with every migration applied, dropped afterwards."""
    cfg = _with_database(settings, f"{settings.database_name}_{suffix}")
    ensure_database(cfg)
    try:
        apply_migrations(cfg)
        yield cfg
    finally:
        drop_database(cfg)


@contextmanager
def dashboard(cfg: Settings, name: str) -> Iterator[str]:
    """`streamlit run dashboard/app.py` with `cfg` in its environment; yields its base URL."""
    if not STREAMLIT.exists():
        pytest.fail(f"{STREAMLIT} missing: `make setup` installs streamlit from requirements.txt")
    port = _free_port()
    env = {**os.environ, **cfg.as_env()}
    log_path = OUTPUT / f"streamlit-{name}.log"
    OUTPUT.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                str(STREAMLIT),
                "run",
                "dashboard/app.py",
                "--server.address=127.0.0.1",
                f"--server.port={port}",
                "--server.headless=true",
                "--server.fileWatcherType=none",
                "--browser.gatherUsageStats=false",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_healthy(url, proc, log_path)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"streamlit exited with {proc.returncode}: {log_path.read_text()}")
        try:
            if httpx.get(f"{url}/_stcore/health", timeout=5).text == "ok":
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"streamlit not healthy at {url} after {START_TIMEOUT_S}s: {log_path.read_text()}")


def show(driver: webdriver.Chrome, url: str, expected: list[str], shot: str) -> str:
    """Open `url`, wait until every `expected` text is rendered and the script run is over, save a
    screenshot named `shot`, and return the page's text."""
    driver.get(url)

    def rendered(d: webdriver.Chrome) -> bool:
        text = d.find_element(By.TAG_NAME, "body").text
        running = d.find_elements(By.CSS_SELECTOR, '[data-testid="stStatusWidget"]')
        return all(e in text for e in expected) and not running

    try:
        WebDriverWait(driver, RENDER_TIMEOUT_S, poll_frequency=0.5).until(rendered)
    except TimeoutException:
        driver.save_screenshot(str(OUTPUT / f"{shot}-timeout.png"))
        text = driver.find_element(By.TAG_NAME, "body").text
        missing = [e for e in expected if e not in text]
        pytest.fail(f"{url}: {missing} not rendered within {RENDER_TIMEOUT_S}s; page:\n{text}")
    _screenshot(driver, shot)
    text = str(driver.find_element(By.TAG_NAME, "body").text)
    (OUTPUT / f"{shot}.txt").write_text(text)
    assert "Page not found" not in text
    assert "Traceback" not in text
    return text


def _screenshot(driver: webdriver.Chrome, shot: str) -> None:
    # Charts draw after the script run ends; give Vega a moment, then fit the window to the page.
    WebDriverWait(driver, RENDER_TIMEOUT_S).until(
        lambda d: all(
            c.find_elements(By.CSS_SELECTOR, "canvas, svg")
            for c in d.find_elements(By.CSS_SELECTOR, '[data-testid="stVegaLiteChart"]')
        )
    )
    height = driver.execute_script(
        "const m = document.querySelector('[data-testid=\"stMain\"]');"
        "return Math.max(document.body.scrollHeight, m ? m.scrollHeight : 0);"
    )
    driver.set_window_size(1400, min(int(height) + 120, 6000))
    time.sleep(1.5)
    driver.save_screenshot(str(OUTPUT / f"{shot}.png"))
    driver.set_window_size(1400, 1000)


def seed(cfg: Settings) -> None:
    """Three devices over three hours, a registry with every status, two runs, quarantine and
    data-quality results; the numbers the tests assert follow from these rows."""
    hourly = [
        # device, hours ago, events, sessions, crash events, avg battery, min battery
        ("dev-alpha", 3, 600, 10, 2, 81.0, 75.0),
        ("dev-alpha", 2, 500, 9, 1, 70.0, 64.0),
        ("dev-alpha", 1, 400, 8, 0, 60.0, 55.0),
        ("dev-bravo", 2, 300, 7, 1, 50.0, 41.0),
        ("dev-bravo", 1, 250, 6, 1, 45.0, 12.0),
        ("dev-charlie", 1, 7, 2, 0, 99.0, 98.0),
    ]
    with psycopg.connect(cfg.database_url, autocommit=True) as conn:
        for device, ago, events, sessions, crashes, avg_pct, min_pct in hourly:
            conn.execute(
                """
                insert into analytics.device_hourly (
                    device_id, hour_start, events, sessions, event_types, crash_events,
                    avg_battery_pct, min_battery_pct, avg_battery_temperature_c,
                    low_battery_events, avg_signal_dbm, wifi_events, cellular_events,
                    first_event_at, last_event_at)
                values (%s, date_trunc('hour', now()) - make_interval(hours => %s), %s, %s, 3,
                    %s, %s, %s, 31.5, 0, -70.0, %s, 0,
                    date_trunc('hour', now()) - make_interval(hours => %s),
                    date_trunc('hour', now()) - make_interval(hours => %s) + interval '59 min')
                """,
                (device, ago, events, sessions, crashes, avg_pct, min_pct, events, ago, ago),
            )
        objects = [
            ("processed", 4, "0 min"),
            ("pending", 2, "2 hours 58 minutes"),
            ("failed", 1, "1 hour"),
        ]
        n = 0
        for status, how_many, ago in objects:
            for _ in range(how_many):
                n += 1
                conn.execute(
                    """
                    insert into registry.raw_objects (object_key, source, batch_id, size_bytes,
                        event_count, received_at, status)
                    values (%s, 'mobile', gen_random_uuid(), 1000, 10,
                        now() - %s::interval - make_interval(secs => %s), %s)
                    """,
                    (f"raw/mobile/obj-{n}.jsonl.gz", ago, n, status),
                )
        runs = [
            ("run-dash-1", "bronze", "succeeded", 600, 90, 70, 70, None),
            ("run-dash-1", "silver", "succeeded", 510, 45, 70, 68, None),
            ("run-dash-2", "bronze", "failed", 120, 12, 10, None, "boom: disk full"),
        ]
        for run_id, stage, status, ago_s, took_s, rows_in, rows_out, error in runs:
            conn.execute(
                """
                insert into registry.pipeline_runs (run_id, stage, started_at, finished_at,
                    status, objects, rows_in, rows_out, error)
                values (%s, %s, now() - make_interval(secs => %s),
                    now() - make_interval(secs => %s) + make_interval(secs => %s),
                    %s, 4, %s, %s, %s)
                """,
                (run_id, stage, ago_s, ago_s, took_s, status, rows_in, rows_out, error),
            )
        reasons = [
            [
                {"field": "battery_pct", "message": "above 100"},
                {"field": "device_id", "message": "missing"},
            ],
            [{"field": "battery_pct", "message": "below 0"}],
            [{"field": "timestamp", "message": "in the future"}],
        ]
        for i, reason in enumerate(reasons):
            conn.execute(
                """
                insert into registry.quarantine (batch_id, source, event_index, component,
                    reasons, payload, received_at)
                values (gen_random_uuid(), 'mobile', %s, 'ingest_api', %s, '{}', now())
                """,
                (i, Jsonb(reason)),
            )
        conn.execute(
            """
            insert into analytics.dq_results (run_id, table_name, rule, dimension, action,
                rows_checked, rows_failed, checked_at)
            values ('run-dash-1', 'silver.device_events', 'battery_pct_in_range', 'validity',
                    'quarantine', 70, 2, now()),
                   ('run-dash-1', 'silver.device_events', 'event_id_unique', 'uniqueness',
                    'fail', 70, 0, now())
            """
        )
        conn.execute(
            """
            insert into analytics.alerts (source, dag_id, dag_run_id, task_id, try_number,
                severity, message)
            values ('airflow', 'telemetry_lake', 'manual__dash', 'bronze', 3, 'critical',
                    'RegistryError: registry unavailable')
            """
        )


# --- tests ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seeded_url(settings: Settings) -> Iterator[str]:
    with scratch_database(settings, "dash_seeded") as cfg:
        seed(cfg)
        with dashboard(cfg, "seeded") as url:
            yield url


def test_devices_page_shows_seeded_totals(browser: webdriver.Chrome, seeded_url: str) -> None:
    text = show(
        browser,
        f"{seeded_url}/",
        ["Events per hour", "Battery by hour", "Top 10 busiest devices", "Events of dev-alpha"],
        "devices",
    )
    # Totals: 3 devices, 6 device-hours, 2,057 events, 42 sessions, 5 crash events.
    assert "Devices\n3" in text
    assert "Device-hours\n6" in text
    assert "Events\n2,057" in text
    assert "Sessions\n42" in text
    assert "Crash events\n5" in text
    # Top devices, busiest first; the picker opens on the busiest.
    assert text.index("dev-alpha") < text.index("dev-bravo") < text.index("dev-charlie")
    assert "dev-alpha\n1,500\n3\n3\n70.3\n" in text
    assert "Events of dev-alpha\n1,500" in text
    assert "Hours active\n3" in text


def test_device_picker_follows_the_query_parameter(
    browser: webdriver.Chrome, seeded_url: str
) -> None:
    text = show(
        browser, f"{seeded_url}/?device=dev-bravo", ["Events of dev-bravo"], "device_picker"
    )
    assert "Events of dev-bravo\n550" in text
    assert "Hours active\n2" in text


def test_pipeline_health_page_shows_the_registry(
    browser: webdriver.Chrome, seeded_url: str
) -> None:
    text = show(
        browser,
        f"{seeded_url}/pipeline_health",
        [
            "Raw objects by status",
            "Recent pipeline runs",
            "Quarantine by reason",
            "Data quality",
            "battery_pct_in_range",
            "manual__dash",
        ],
        "pipeline_health",
    )
    assert "Pending\n2" in text
    assert "Processing\n0" in text
    assert "Processed\n4" in text
    assert "Failed\n1" in text
    assert (
        "pending\n2\n20\n2,000\nprocessing\n0\n0\n0\nprocessed\n4\n40\n4,000\nfailed\n1\n10" in text
    )
    # The older pending object arrived 2 h 58 min ago: "3.0 h", "3.1 h" on a slow machine.
    assert re.search(r"Oldest pending\n3\.[01] h\n", text), text
    assert "run-dash-2" in text
    assert "boom: disk full" in text
    assert "run-dash-2\nbronze\nfailed\n12,000\n4\n10\n" in text
    assert "run-dash-1\nbronze\nsucceeded\n90,000\n4\n70\n70" in text
    assert "battery_pct_in_range\nvalidity\nquarantine\n70\n2\n2.9\n" in text
    assert "3 quarantined events, 0 replayed." in text
    assert "battery_pct\n2\n2\ndevice_id\n1\n1\ntimestamp\n1\n1" in text
    assert (
        "critical\nairflow\ntelemetry_lake\nbronze\n3\nmanual__dash\nRegistryError: registry"
        in text
    )
    # By source: pending, processing, processed, failed, events.
    assert "mobile\n2\n0\n4\n1\n70\n" in text
    # Quarantine by source and component: events, replayed.
    assert "mobile\ningest_api\n3\n0\n" in text


def test_empty_database_gets_hints_not_errors(
    browser: webdriver.Chrome, settings: Settings
) -> None:
    with scratch_database(settings, "dash_empty") as cfg:
        # As before the data-quality migration: the page must say so rather than fail.
        with psycopg.connect(cfg.database_url, autocommit=True) as conn:
            conn.execute("drop table analytics.dq_results")
            conn.execute("drop table analytics.alerts cascade")  # and fleet_monitor's key
        with dashboard(cfg, "empty") as url:
            text = show(browser, f"{url}/", [NO_DATA], "empty_devices")
            assert f"{NO_DATA} to fill analytics.device_hourly." in text
            text = show(
                browser,
                f"{url}/pipeline_health",
                [f"{NO_DATA} to fill registry.raw_objects.", "analytics.alerts does not exist yet"],
                "empty_pipeline_health",
            )
            assert f"{NO_DATA} to fill registry.pipeline_runs." in text
            assert "Nothing quarantined" in text
            assert "Traceback" not in text


def test_database_down_shows_an_error_box(browser: webdriver.Chrome, settings: Settings) -> None:
    port = _free_port()  # nothing listens there
    url = urlsplit(settings.database_url)._replace(netloc=f"postgres@127.0.0.1:{port}").geturl()
    cfg = settings.model_copy(update={"database_url": url})
    with dashboard(cfg, "down") as base:
        text = show(browser, f"{base}/", ["Database unavailable."], "database_down")
    assert f"cannot reach PostgreSQL at postgresql://postgres@127.0.0.1:{port}/" in text
    assert "make up" in text
