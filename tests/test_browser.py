"""One real browser against a served app: headless Debian Chromium through Selenium and the system
chromedriver (no browser download). Serves `app.py` on loopback, opens the Scenario and Fusion
pages, waits for their plotly charts, checks the key numbers against the engine, checks that no
request left the machine, and saves the screenshots the README shows (docs/screenshots/)."""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from urllib.parse import urlencode
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
                       reason="needs Debian's chromium and chromium-driver (.ci/run installs them: "
                              "apt-get install chromium chromium-driver)"),
]
LOCAL = ("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:", "about:", "chrome:", "chrome-extension:")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "streamlit.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # RMTLLMF_CACHE_DIR: the test session's cache (conftest)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the app did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-dev-shm-usage", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--window-size=1600,1500", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def wait_for(driver, condition, timeout=480, what="the page"):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.5).until(condition, message=f"waiting for {what}")


def charts(driver):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, ".js-plotly-plot")


def text(driver) -> str:
    return driver.find_element("tag name", "body").text


def idle(driver) -> bool:
    """Streamlit has finished this run (no 'running' indicator) and drew something."""
    from selenium.webdriver.common.by import By

    return not driver.find_elements(By.CSS_SELECTOR, "[data-testid='stStatusWidget']") and bool(
        driver.find_elements(By.CSS_SELECTOR, "[data-testid='stMetric']"))


def requests_seen(driver) -> list[str]:
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") in ("Network.requestWillBeSent", "Network.webSocketCreated"):
            params = message["params"]
            urls.append(params.get("request", {}).get("url") or params.get("url", ""))
    return urls


def test_scenario_and_fusion_pages_in_a_real_browser(server, browser):
    from rmtllmf_core.experiment import pipeline
    from rmtllmf_core.experiment.presets import default_scenario
    from rmtllmf_core.science.wireless import evaluate_uplink
    from selenium.webdriver.common.by import By
    from studio import codec

    SHOTS.mkdir(parents=True, exist_ok=True)
    # the default scenario under the worst-case sum-rate jammer, evaluated on fewer samples, with a
    # shorter realignment and the per-N lambda (no validation search): a short cold run on a small CI machine
    default = default_scenario()
    scenario = default.replace(**{"wireless.attack": "worst_sum_rate", "evaluation.samples_per_task": 60,
                                  "defense.realign_steps": 10, "fusion.lambda_mode": "heuristic",
                                  "evaluation.clean_realign_control": False})
    link = f"{server}/scenario?{urlencode(codec.to_query(scenario, default))}"

    # Scenario page: the placement map and the jammer's eigenmodes, and the engine's numbers
    browser.get(link)
    wait_for(browser, lambda d: len(charts(d)) >= 2 and idle(d), what="the Scenario page's plotly charts")
    uplink = evaluate_uplink(scenario.wireless)
    page = text(browser)
    assert "Average MSE" in page and f"{uplink.average_mse:.4f}" in page
    assert "Sum rate, b/s/Hz" in page and f"{uplink.sum_rate_nats / 0.6931471805599453:.2f}" in page
    assert "worst_sum_rate" in browser.current_url
    time.sleep(1.0)  # let plotly finish its transitions
    browser.save_screenshot(str(SHOTS / "scenario.png"))

    # Fusion page, through the sidebar (same session, same scenario): a cold run, then its charts
    browser.find_element(By.CSS_SELECTOR, "a[href*='fusion']").click()
    wait_for(browser, lambda d: "Jammed + defense" in text(d) and len(charts(d)) >= 2 and idle(d),
             what="the Fusion page's plotly charts")
    result = pipeline.cached(scenario)
    assert result is not None, "the run the page showed is in the disk cache"
    page = text(browser)
    avg = result.average_normalized
    for cond in ("clean", "attacked", "defended"):
        assert f"{100 * avg[cond]:.1f}%" in page
    assert "/fusion" in browser.current_url and "worst_sum_rate" in browser.current_url
    time.sleep(1.0)
    browser.save_screenshot(str(SHOTS / "fusion.png"))

    # Trade-offs and About render too (their long computations start only on request)
    for path, name, marker in (("tradeoffs", "tradeoffs", "Accuracy versus jammer power"),
                               ("about", "about", "The equations, in short")):
        browser.find_element(By.CSS_SELECTOR, f"a[href*='{path}']").click()
        wait_for(browser, lambda d: marker in text(d), what=f"the {name} page")
        time.sleep(1.5)
        assert "Traceback" not in text(browser)
        browser.save_screenshot(str(SHOTS / f"{name}.png"))

    # nothing left the machine: every request went to the app on loopback
    outside = [u for u in requests_seen(browser) if u and not u.startswith(LOCAL)]
    assert not outside, outside


def _viewport(browser, width: int, height: int) -> None:
    """The page's own size (a window's size includes the browser's frame)."""
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})


def _visible(el, width: int, height: int) -> bool:
    r = el.rect
    return r["x"] >= 0 and r["y"] >= 0 and r["x"] + r["width"] <= width + 1 and r["y"] + r["height"] <= height + 1


def test_the_story_in_presenter_mode_on_a_projector_then_the_first_view(server, browser):
    """The guided story as a presenter shows it on a 1280x720 projector: every step's bar, buttons, numbers
    and chart on one screen without scrolling, the sidebar folded; then Home, the first view, with the
    harm-and-repair numbers of the same runs."""
    from rmtllmf_core.experiment import pipeline
    from rmtllmf_core.studies import story
    from selenium.webdriver.common.by import By

    W, H = 1280, 720
    _viewport(browser, W, H)
    try:
        browser.get(f"{server}/story?presenter=1")
        wait_for(browser, lambda d: "individual models" in text(d) and len(charts(d)) >= 1 and idle(d),
                 what="the story's first step")
        assert "Share this view" not in text(browser)          # presenter mode hides the plumbing
        sidebar = browser.find_elements(By.CSS_SELECTOR, "[data-testid='stSidebar']")
        assert not sidebar or sidebar[0].rect["x"] + sidebar[0].rect["width"] <= 1, "presenter mode folds the sidebar"
        for i, step in enumerate(story.STEPS):
            if i:
                before = text(browser)
                next(b for b in browser.find_elements(By.TAG_NAME, "button") if "Next" in b.text).click()
                wait_for(browser, lambda d: text(d) != before and "Computing" not in text(d) and idle(d)
                         and len(charts(d)) >= 1, what="the next step")
            time.sleep(1.5)  # plotly's transitions, and a last rerun's redraw
            wait_for(browser, lambda d: "Computing" not in text(d) and idle(d), what="the step, drawn")
            chart = charts(browser)[0]
            assert _visible(chart, W, H), f"step {i + 1}: the chart {chart.rect} is not on the {W}x{H} screen"
            for b in browser.find_elements(By.TAG_NAME, "button"):
                if b.text in ("Back", "Next"):
                    assert _visible(b, W, H), f"step {i + 1}: {b.text} off screen"
            for label in (f"{j}. {s.key.capitalize()}" for j, s in enumerate(story.STEPS, 1)):
                el = next(e for e in browser.find_elements(By.XPATH, f"//*[text()='{label}']"))
                assert _visible(el, W, H), f"step {i + 1}: the step bar's {label!r} is clipped"
            for m in browser.find_elements(By.CSS_SELECTOR, "[data-testid='stMetricValue']"):
                assert _visible(m, W, H) and "…" not in m.text and "..." not in m.text, m.text
            if step.key == "repair":
                browser.save_screenshot(str(SHOTS / "story-presenter.png"))
        result = pipeline.cached(story.scenario(story.step("repair")))
        assert result is not None
        browser.find_element(By.XPATH, "//button[contains(., 'Back')]").click()
        wait_for(browser, lambda d: "Jammed + R-MTLLMF" in text(d) and idle(d), what="the repair step")
        page = text(browser)
        assert f"{100 * result.average_normalized['defended']:.1f}%" in page
        assert story.narrative(story.step("repair"), result).split(":")[0] in page
        assert "Traceback" not in page

        # Home, the first view: the same runs' harm and repair, from the cache, with the way into the story
        start = time.monotonic()
        browser.get(f"{server}/?presenter=1")
        wait_for(browser, lambda d: "Jammed (P1) + R-MTLLMF" in text(d) and len(charts(d)) >= 1 and idle(d),
                 timeout=60, what="the first view's numbers")
        assert time.monotonic() - start < 30
        page = text(browser)
        for cond in ("clean", "attacked", "defended"):
            assert f"{100 * result.average_normalized[cond]:.1f}%" in page
        assert "Tell the story" in page and _visible(charts(browser)[0], W, H)
        time.sleep(1.0)
        browser.save_screenshot(str(SHOTS / "home-presenter.png"))
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_a_hostile_link_is_summarised_at_the_top_and_still_answers(server, browser):
    """A link with a bad choice and a value the zoo cannot hold: both named at the top of the page by their
    name in the link and their control's label, dropped from the link, the rest kept, a result shown;
    the Scenario page's own address opens it."""
    from selenium.webdriver.common.by import By

    cheap = "&defense.realign_steps=5&fusion.lambda_mode=heuristic&evaluation.clean_realign_control=false"
    browser.get(f"{server}/fusion?wireless.attack=nope&evaluation.samples_per_task=5000&seed=3{cheap}")
    wait_for(browser, lambda d: "This link had values the app refused" in text(d) and idle(d), what="the summary")
    summary = browser.find_element(By.CSS_SELECTOR, "[data-testid='stAlertContainer']").text
    assert "wireless.attack (Attack)" in summary and "allowed: none (ideal channel)" in summary
    assert "evaluation.samples_per_task (Test samples per task)" in summary and "at most" in summary
    assert "samples_per_task" not in browser.current_url and "attack=nope" not in browser.current_url
    assert "seed=3" in browser.current_url                                # the valid part is kept
    browser.get(f"{server}/scenario?wireless.attack=worst_sum_rate")
    wait_for(browser, lambda d: "Placement" in text(d) and idle(d), what="the Scenario page at its own address")
    assert "Page not found" not in text(browser) and "worst_sum_rate" in browser.current_url
