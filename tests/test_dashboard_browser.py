"""Stage 07 in a real browser: ``python 07_dashboard.py`` on a free loopback port, each page opened in headless
Debian Chromium through Selenium and the system chromedriver, its key content checked and a screenshot saved.

Screenshots go to pytest's temp folder, or to ``$ALPHASIGNAL_SCREENSHOTS`` when set (how the README's are made).
CI installs ``chromium`` and ``chromium-driver`` (.ci/run); the test skips only where neither is installed."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from fixtures_llm import find_port

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
         "--window-size=1400,2000")
# page -> texts that must render (the run id is added at run time)
PAGES = {"runs": ["Optimizer runs", "hold-out sharpe improvement over the initial baseline",
                  "Optimizers with the same backtest budget", "Round 1"],
         "sweeps": ["Sweeps", "sharpe heatmap", "DSR AAPL", "PBO AAPL", "In-sample vs out-of-sample Sharpe"],
         "signals": ["Signals", "Run the pipeline", "providers: chart builtin"],
         "dataset": ["Dataset", "Label distribution per split", "BUY", "HOLD", "SELL"]}
CHARTS = {"runs": 2, "sweeps": 2, "signals": 0, "dataset": 1}  # Vega-Lite charts each page draws

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="Debian chromium and chromium-driver are not "
                                 "installed (CI installs them: apt-get install chromium chromium-driver)")]


@pytest.fixture
def server(dashboard_project, tmp_path):
    """``python 07_dashboard.py`` on a free port over the fixture project; yields its base URL."""
    root, cfg = dashboard_project
    port = find_port()
    sets = [f"dashboard.{k}={v}" for k, v in (("results_dir", root / "results"), ("dataset_dir", root / "dataset"),
                                              ("models_dir", root / "models"),
                                              ("history_db", cfg.optimizer.history_db),
                                              ("sweep", cfg.sweep.output))] + ["pipeline.provider=builtin"]
    log = tmp_path / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "07_dashboard.py", "--port", str(port),
                                 *(a for s in sets for a in ("--set", s))], cwd=ROOT, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.read() == b"ok":
                        break
            except OSError:
                pass
            assert proc.poll() is None, f"dashboard exited: {log.read_text()}"
            assert time.monotonic() < deadline, f"no /_stcore/health after 90 s: {log.read_text()}"
            time.sleep(0.5)
        yield url, log
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-')}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


def _settled(driver, texts: list[str], charts: int, timeout: float = 90) -> str:
    """Wait until every text is on the page, the app stopped running and the charts are drawn; returns the text."""
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + timeout
    while True:
        body = driver.find_element(By.TAG_NAME, "body").text
        running = driver.find_elements(By.CSS_SELECTOR, "[data-testid='stStatusWidget']")
        drawn = driver.find_elements(By.CSS_SELECTOR, "[data-testid='stVegaLiteChart'] canvas, "
                                                      "[data-testid='stVegaLiteChart'] svg")
        missing = [t for t in texts if t not in body]
        assert not driver.find_elements(By.CSS_SELECTOR, "[data-testid='stException']"), body[:2000]
        if not missing and not running and len(drawn) >= charts:
            return body
        assert time.monotonic() < deadline, f"still missing {missing}, {len(drawn)}/{charts} charts: {body[:2000]}"
        time.sleep(0.5)


def test_each_page_renders_in_headless_chromium(server, browser, dashboard_project, tmp_path):
    from selenium.webdriver.common.by import By

    from alphasignal.storage.history import History

    url, log = server
    _, cfg = dashboard_project
    with History(cfg.optimizer.history_db, create=False) as h:
        run_id = h.runs()[0].run_id
    shots = Path(os.environ.get("ALPHASIGNAL_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    for page, texts in PAGES.items():
        browser.get(f"{url}/{'' if page == 'runs' else page}")  # the default page lives at /
        body = _settled(browser, texts + ([run_id] if page == "runs" else []), CHARTS[page])
        time.sleep(1)  # let the last chart finish its transition before the screenshot
        assert not browser.find_elements(By.CSS_SELECTOR, "[data-testid='stException']"), page
        assert "Traceback" not in body, page
        if page == "dataset":
            assert browser.find_elements(By.CSS_SELECTOR, "[data-testid='stImage'] img"), "no sample chart shown"
        browser.save_screenshot(str(shots / f"dashboard_{page}.png"))
        assert (shots / f"dashboard_{page}.png").stat().st_size > 10_000
        if page == "signals":  # the replay tab: the fixture's real stage 04 replay
            tab = next(t for t in browser.find_elements(By.CSS_SELECTOR, "[role='tab']")
                       if "Replay results" in t.text)
            tab.click()
            _settled(browser, ["Equity and drawdown", "Trades ("], 3)
            time.sleep(1)
            browser.save_screenshot(str(shots / "dashboard_signals_replay.png"))
    assert "Traceback" not in log.read_text()
