"""What one cached view of each page costs the server: CPU time of the Streamlit process per session.

    .venv/bin/python benchmarks/bench_pages.py [--pages home,scenario,story,fusion] [--sessions 40] [--tree DIR]

Fills a fresh result cache with the landing view's and the Story's runs (`python -m rmtllmf_core warm`),
starts `streamlit run app.py` on 127.0.0.1, opens each page once (computing what it shows), then opens it
`--sessions` more times, one session after another, over Streamlit's own websocket protocol (as
benchmarks/bench_load.py's virtual users do). For each page it prints the server process's CPU
milliseconds per session (every session a cache hit: the pages' own work, Streamlit's, the websocket's),
the wall time per session and what a session sent. One idle session stays open throughout: with no
session open, Streamlit recompiles the page scripts on the next one. Under load a session costs the
server more than alone (bench_load.py reports that figure too). `--tree DIR` serves another checkout's
app (e.g. a `git worktree` of an earlier commit) with this venv, for a before/after on one machine.
"""
from __future__ import annotations

from where import print_header  # noqa  (benchmarks/ is the script's own folder)
import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bench_load as bl

ROOT = Path(__file__).resolve().parent.parent


def wait_idle(pid: int, quiet_s: int = 5, timeout_s: float = 120.0) -> None:
    """Until the server's own background work is over (it loads the zoo a few seconds after its first page,
    then starts the engine processes): `quiet_s` seconds in a row under 2% of a core each."""
    end = time.monotonic() + timeout_s
    last, quiet = bl.cpu_seconds(pid), 0
    while quiet < quiet_s and time.monotonic() < end:
        time.sleep(1.0)
        now = bl.cpu_seconds(pid)
        quiet = quiet + 1 if now - last < 0.02 else 0
        last = now


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pages", default="home,scenario,story,fusion", help="url paths, comma-separated")
    ap.add_argument("--sessions", type=int, default=40, help="cached sessions per page, one after another")
    ap.add_argument("--tree", default=str(ROOT), help="the checkout whose app.py is served (default: this one)")
    args = ap.parse_args(argv)
    if args.sessions < 1:
        ap.error("--sessions must be positive")
    print_header(None)
    cache = tempfile.mkdtemp(prefix="rmtllmf-bench-pages-")
    tree = Path(args.tree).resolve()
    env = {**os.environ, "RMTLLMF_CACHE_DIR": cache, "PYTHONPATH": str(tree)}
    subprocess.run([sys.executable, "-m", "rmtllmf_core", "warm"], cwd=tree, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    port = bl.free_port()
    print(f"serving {tree}/app.py on {bl.HOST}:{port}, cache {cache}")
    proc = bl.start_server(port, cache, Path(cache) / "server.log", {}, tree=tree)
    rows = []
    try:
        bl.wait_healthy(port, proc, 120)
        import websocket

        idle = websocket.create_connection(f"ws://{bl.HOST}:{port}/_stcore/stream", subprotocols=["streamlit"],
                                           origin=f"http://{bl.HOST}:{port}")
        for page in [p.strip() for p in args.pages.split(",") if p.strip()]:
            first = bl.open_session(port, page, {}, "warm-up", 600)
            if first.failure or first.exception:
                raise RuntimeError(f"{page}: {first.failure or first.exception}")
            for _ in range(3):   # the page's cached figures and the interpreter's caches, warm
                bl.open_session(port, page, {}, "hit", 120)
            wait_idle(proc.pid)
            cpu0, t0 = bl.cpu_seconds(proc.pid), time.monotonic()
            for _ in range(args.sessions):
                o = bl.open_session(port, page, {}, "hit", 120)
                if not o.finished or o.failure or o.exception:
                    raise RuntimeError(f"{page}: {o.failure or o.exception or 'did not finish'}")
            cpu, wall = bl.cpu_seconds(proc.pid) - cpu0, time.monotonic() - t0
            rows.append((page, 1000 * cpu / args.sessions, 1000 * wall / args.sessions, o.bytes_received / 1000))
        idle.close()
    finally:
        bl.stop_server(proc)
    print(f"\n| page (cached view, {args.sessions} sessions one after another) | server CPU per session | "
          "wall per session | kB sent |")
    print("|---|---|---|---|")
    for page, cpu_ms, wall_ms, kb in rows:
        print(f"| {page} | {cpu_ms:.1f} ms | {wall_ms:.1f} ms | {kb:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
