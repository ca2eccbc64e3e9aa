"""Dashboard speed on the embedded zoo (issue 5's targets):

1. time to first interactive page: from `streamlit run app.py` (a fresh server process) until a
   headless Chromium shows the Scenario page's plotly charts and numbers (target < 10 s); then, from
   the same start, until Home shows its chart, which on a fresh cache waits for the server's warm-up
   to compute the landing view's runs;
2. cache-hit rerun of the Fusion page, server time (AppTest: the script's run, rendering included;
   target < 300 ms), both a plain rerun and a switch between two cached scenarios;
3. cold single run of the default scenario: the Fusion page's whole cold run (AppTest), split
   into the engine's own stage timings and the rest (rendering); once in a fresh process, once warm.

Everything uses a private, fresh result cache and only loopback addresses.

    .venv/bin/python benchmarks/bench_app.py [--repeats 10] [--no-browser | --no-apptest] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from where import print_header  # noqa: E402  (benchmarks/ is the script's own folder)
os.environ["RMTLLMF_CACHE_DIR"] = tempfile.mkdtemp(prefix="rmtllmf-bench-app-")  # before any engine import

TARGETS = {"first_interactive_s": 10.0, "fusion_cache_hit_rerun_ms": 300.0, "fusion_cache_hit_switch_ms": 300.0,
           "engine_cold_run_s": 3.0}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def first_interactive(timeout: float = 120.0) -> dict:
    """Seconds from launching `streamlit run app.py` to the Scenario page's charts in Chromium."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=options)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    try:
        start = time.perf_counter()  # the browser is up already: only the app's time is counted
        proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                                 "--server.address", "127.0.0.1", "--server.headless", "true"],
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            served = None
            while served is None and time.perf_counter() - start < timeout:
                try:
                    with urllib.request.urlopen(f"{url}_stcore/health", timeout=1) as r:
                        served = time.perf_counter() - start if r.status == 200 else None
                except OSError:  # refused until the server listens
                    time.sleep(0.05)
            driver.get(url + "scenario")  # "/" is Home, whose chart waits for the warm-up's runs (below)
            frontend = time.perf_counter() - start  # the page's HTML and scripts loaded
            WebDriverWait(driver, timeout, poll_frequency=0.05).until(
                lambda d: d.find_elements(By.CSS_SELECTOR, "[data-testid='stSidebarNav']"))
            first_element = time.perf_counter() - start  # the script's first output arrived
            WebDriverWait(driver, timeout, poll_frequency=0.05).until(
                lambda d: len(d.find_elements(By.CSS_SELECTOR, ".js-plotly-plot")) >= 1
                and d.find_elements(By.CSS_SELECTOR, "[data-testid='stMetric']"))
            interactive = time.perf_counter() - start
            # Home on a fresh cache: its chart shows once the server's warm-up (`warm_on_start`) has
            # computed the landing view's runs, which start with the server
            driver.get(url)
            WebDriverWait(driver, timeout, poll_frequency=0.05).until(
                lambda d: d.find_elements(By.CSS_SELECTOR, ".js-plotly-plot"))
            home = time.perf_counter() - start
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    finally:
        driver.quit()
    return {"server_answers_s": served, "frontend_loaded_s": frontend, "first_output_s": first_element,
            "first_interactive_s": interactive, "home_chart_fresh_cache_s": home}


def apptest_timings(repeats: int) -> dict:
    from streamlit.testing.v1 import AppTest

    from rmtllmf_core.experiment import pipeline
    from rmtllmf_core.experiment.presets import default_scenario
    from studio import codec

    default = default_scenario()  # loads the zoo once (the server does this once too)
    out: dict = {}

    def fusion(scn):
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
        at.query_params.update(codec.to_query(scn, default))
        at.run()
        at.switch_page("pages/fusion.py")
        t = time.perf_counter()
        at.run()
        assert not at.exception, [e.message for e in at.exception]
        return at, time.perf_counter() - t

    # cold: the default scenario (8 tasks, R-MTLLMF with 10 shots) with a seed nobody computed; the
    # first run of a process also builds the evaluation data. Then, warm, the shrinkage switch on
    # (another scenario: a second cold run, through the page's own control).
    at, page_s = fusion(default.replace(seed=4242))
    key = next(w.key for w in at.toggle if w.key and w.key.startswith("fusion.defense.shrinkage."))
    for label in ("first", "warm"):
        if label == "warm":
            at.toggle(key=key).set_value(True)
            t = time.perf_counter()
            at.run()
            page_s = time.perf_counter() - t
        engine_s = sum(pipeline.cached(at.session_state["studio.scenario"]).timing_s.values())
        out[f"fusion_page_cold_{label}_s"] = page_s
        out[f"engine_cold_run_{label}_s"] = engine_s
        out[f"rendering_cold_{label}_s"] = page_s - engine_s
    out["engine_cold_run_s"] = out["engine_cold_run_warm_s"]

    # cache-hit reruns: the same scenario again (what a redraw costs) ...
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        at.run()
        times.append(time.perf_counter() - t)
    out["fusion_cache_hit_rerun_ms"] = 1000 * statistics.median(times)
    out["fusion_cache_hit_rerun_p90_ms"] = 1000 * sorted(times)[int(0.9 * (len(times) - 1))]

    # ... and a control moved between two cached scenarios (the shrinkage switch off and on)
    times = []
    for i in range(repeats):
        at.toggle(key=key).set_value(i % 2 == 1)  # both results are in the cache now
        t = time.perf_counter()
        at.run()
        times.append(time.perf_counter() - t)
        assert not at.exception
    out["fusion_cache_hit_switch_ms"] = 1000 * statistics.median(times)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--no-browser", action="store_true", help="skip the first-interactive measurement")
    parser.add_argument("--no-apptest", action="store_true", help="only the first-interactive measurement")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    print_header(None)  # where it ran: torch build, CPU flags, threads (benchmarks/where.py)

    figures: dict = {"cpu_count": os.cpu_count()}
    if not args.no_browser:
        if shutil.which("chromium") or os.path.exists("/usr/bin/chromium"):
            figures.update(first_interactive())
        else:
            print("chromium not found: first-interactive time skipped", file=sys.stderr)
    if not args.no_apptest:
        figures.update(apptest_timings(args.repeats))

    print(f"{'measure':40s} {'value':>10s} {'target':>10s}")
    for name, value in figures.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            target = TARGETS.get(name)
            print(f"{name:40s} {value:10.3f} {'' if target is None else f'< {target:g}':>10s}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
