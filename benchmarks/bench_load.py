"""Load test of a served instance: many concurrent sessions, cache hits, cold runs, bad links.

    .venv/bin/python benchmarks/bench_load.py --sessions 24 --duration 120

Starts `streamlit run app.py` on 127.0.0.1 (a free port, a fresh result cache unless --cache-dir
is given), then drives `--sessions` concurrent virtual users for `--duration` seconds (and at
most `--max-requests` sessions in all). Each virtual user repeatedly opens a new Streamlit
session over the real websocket protocol (what a browser tab does: connect to /_stcore/stream,
send a rerun_script BackMsg with the page and the link's query string, read ForwardMsg deltas
until the script finishes) and records the time until the page shows its result. Requests mix:

- hit:     a link whose scenario was computed during warm-up (answered from the disk cache);
- cold:    a link with a jammer power never asked before (or, --cold seed, a new seed): a full
           pipeline run through the compute queue (at most --max-cold of them);
- same:    several sessions moving the same slider to the same new value at once: `--burst`
           consecutive "same" requests share one never-asked jammer power (one computation,
           joined by the others: identical requests are computed once);
- invalid: a link with a bad value (out of range, NaN, unknown attack, ...): the page must show
           an error message and the default view, never an exception.

Reported (stdout and --out JSON): sessions served, outcome counts per kind, server errors
(exception elements sent to a browser, tracebacks in the server log, connection failures:
must be 0), lost results (hit/cold sessions that never showed their result, even when the
link was opened again after the tab gave up at --timeout: must be 0), and p50 / p95 time to
result for hits, cold runs and shared slider moves, ending with one table of the figures against
the targets (issue 33: hit p95 < 1 s, cold p95 < 30 s). `--profile FILE` samples the server with
py-spy and adds where its time went. Loopback only; every loop is bounded in count and time; the
server is stopped at the end.
"""
from __future__ import annotations

from where import print_header  # noqa  (benchmarks/ is the script's own folder)
import argparse
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
RESULT_MARKER = re.compile(r"from the result cache|· computed ·")
INVALID_LINKS = [
    {"fusion.lambda": "7"},
    {"seed": "-3"},
    {"wireless.attack": "nuclear"},
    {"tasks": "[]"},
    {"evaluation.samples_per_task": "NaN"},
    {"defense.realign_steps": "100000"},
    {"wireless.jammer_power_w": "-1"},
    {"zoo": "x" * 300},
    {"fusion.method": "<script>alert(1)</script>"},
    {"wireless.tx_power_dbm": "1e309"},
]


@dataclass
class Outcome:
    kind: str
    query: str
    started: float
    seconds: float = float("nan")      # time to result (hit/cold) or to the shown error (invalid)
    result: bool = False               # the page showed its result
    error_shown: bool = False          # an st.error / st.warning element arrived
    exception: str = ""                # an exception element arrived (a server error)
    finished: bool = False             # script_finished arrived
    failure: str = ""                  # connection / protocol failure, timeout
    waited_in_line: bool = False       # the page said "waiting in line" (the compute queue was busy)
    came_back_with_result: bool = False  # timed out, then a new tab with the same link showed the result
    bytes_received: int = 0            # what the page sent this tab (every websocket frame)
    texts: list = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_healthy(port: int, proc: subprocess.Popen, timeout: float) -> float:
    start = time.monotonic()
    url = f"http://{HOST}:{port}/_stcore/health"
    while time.monotonic() - start < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return time.monotonic() - start
        except OSError:
            pass
        time.sleep(0.25)
    raise RuntimeError("server did not become healthy")


# Benchmark-only launcher option (off by default): serve another zoo directory as "tiny" (e.g. a
# micro build, for a quick check while the embedded zoo is being rebuilt).
LAUNCHER = """
import os, sys, pathlib
if os.environ.get("BENCH_ZOO_DIR"):
    import rmtllmf_core.zoo as zoo
    zoo.BUILTIN["tiny"] = pathlib.Path(os.environ["BENCH_ZOO_DIR"])
from streamlit.web.cli import main
sys.argv[0] = "streamlit"
main()
"""


def start_server(port: int, cache_dir: str, log_path: Path, extra_env: dict,
                 profile: str | None = None, tree: Path = ROOT) -> subprocess.Popen:
    """`streamlit run app.py` of the checkout `tree` (default: this one) on HOST:port."""
    env = {**os.environ, "RMTLLMF_CACHE_DIR": cache_dir, "PYTHONPATH": str(tree), **extra_env}
    launcher = ["-c", LAUNCHER] if extra_env else ["-m", "streamlit"]
    cmd = [sys.executable, *launcher, "run", "app.py", "--server.address", HOST, "--server.port", str(port),
           "--server.headless", "true", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    if profile:  # sample the stacks of whichever thread holds the GIL: where a GIL-bound server's time goes
        cmd = [str(Path(sys.executable).with_name("py-spy")), "record", "--gil", "--subprocesses", "--rate", "50",
               "--format", "raw", "--output", profile, "--", *cmd]
    log = open(log_path, "w")
    return subprocess.Popen(cmd, cwd=tree, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def stop_server(proc: subprocess.Popen, profiling: bool = False) -> None:
    if proc.poll() is not None:
        return
    if profiling:  # py-spy writes its file on Ctrl-C; the server it sampled goes down with the group below
        os.kill(proc.pid, signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            pass
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def open_session(port: int, page: str, query: dict, kind: str, timeout: float) -> Outcome:
    """One browser tab: connect, ask for the page with the link's query, read until finished."""
    import websocket
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    qs = urlencode(query)
    out = Outcome(kind=kind, query=qs[:200], started=time.time())
    t0 = time.monotonic()
    ws = None
    try:
        ws = websocket.create_connection(f"ws://{HOST}:{port}/_stcore/stream", subprotocols=["streamlit"],
                                         timeout=timeout, origin=f"http://{HOST}:{port}")
        msg = BackMsg()
        cs = msg.rerun_script
        cs.query_string = qs
        cs.page_name = page
        cs.context_info.timezone = "UTC"
        cs.context_info.locale = "en-US"
        cs.context_info.url = f"http://{HOST}:{port}/{page}" + (f"?{qs}" if qs else "")
        ws.send_binary(msg.SerializeToString())
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            ws.settimeout(max(0.1, deadline - time.monotonic()))
            frame = ws.recv()
            if not isinstance(frame, (bytes, bytearray)):
                continue
            out.bytes_received += len(frame)
            fwd = ForwardMsg()
            fwd.ParseFromString(frame)
            which = fwd.WhichOneof("type")
            if which == "delta" and fwd.delta.WhichOneof("type") == "new_element":
                el = fwd.delta.new_element
                etype = el.WhichOneof("type")
                if etype == "exception":
                    out.exception = (el.exception.type + ": " + el.exception.message)[:300]
                elif etype == "alert" and el.alert.format in (1, 2):  # ERROR, WARNING
                    out.error_shown = True
                    out.texts.append(el.alert.body[:160])
                    if kind == "invalid" and math_isnan(out.seconds):
                        out.seconds = time.monotonic() - t0
                elif etype == "progress" and "waiting in line" in el.progress.text:
                    out.waited_in_line = True
                elif etype == "markdown" and RESULT_MARKER.search(el.markdown.body):
                    if not out.result:
                        out.result = True
                        out.seconds = time.monotonic() - t0
            elif which == "script_finished":
                status = fwd.script_finished
                if status in (ForwardMsg.FINISHED_SUCCESSFULLY, ForwardMsg.FINISHED_WITH_COMPILE_ERROR):
                    out.finished = True
                    if status == ForwardMsg.FINISHED_WITH_COMPILE_ERROR:
                        out.exception = out.exception or "script failed to compile"
                    break
        else:
            out.failure = "timeout"
        if not out.finished and not out.failure:
            out.failure = "timeout"
    except Exception as exc:  # noqa: BLE001 - every failure is counted, not raised
        out.failure = f"{type(exc).__name__}: {str(exc)[:200]}"
    finally:
        if ws is not None:
            try:
                ws.close()
            except Exception:  # noqa: BLE001
                pass
    return out


# what a session's time is spent on: (label, a frame's text that marks it); a sample counts once per label
PROFILE_LABELS = (
    ("a whole script run (every page and the frame)", "exec_func_with_error_handling"),
    ("app.py: the frame, with the page run inside it", "app.py:"),
    # py-spy names a page's frame by its file alone: "<module> (fusion.py:12)"
    ("page: scenario", "<module> (scenario.py"),
    ("page: fusion", "<module> (fusion.py"),
    ("the session's first run (scenario from the link)", "init_session"),
    ("sidebar", "sidebar.py"),
    ("the Editor (widgets from the schema)", "editor.py"),
    ("the engine door (cache lookup, queue)", "studio/engine.py"),
    ("disk cache reads", "rmtllmf_core/cache.py"),
    ("Result parsing", "result.py"),
    ("plotly figure serialisation (st.plotly_chart)", "plotly_chart"),
    ("figure building", "rmtllmf_core/studies/plots.py"),
    ("exports (download buttons)", "download_button"),
    ("dataframes", "dataframe"),
    ("pydantic validation", "pydantic"),
    ("protobuf / websocket sending", "websocket"),
    ("the engine computing (realignment, evaluation)", "rmtllmf_core/experiment/pipeline.py"),
)


def profile_summary(path: Path, top: int = 25) -> dict:
    """Share of the GIL-holding samples per label, and the heaviest frames of our own code (inclusive)."""
    total, per_label, per_frame = 0, {label: 0 for label, _ in PROFILE_LABELS}, {}
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        for label, mark in PROFILE_LABELS:
            if mark in stack:
                per_label[label] += n
        for frame in set(f for f in stack.split(";") if "site-packages" not in f and any(
                part in f for part in ("app.py", "studio/", "pages/", "rmtllmf_core/"))):
            name = re.sub(r":\d+\)$", ")", frame)
            per_frame[name] = per_frame.get(name, 0) + n
    share = lambda n: round(100.0 * n / max(total, 1), 1)
    return {"samples": total,
            "percent_by_label": {k: share(v) for k, v in per_label.items()},
            "heaviest_own_frames_percent": {k: share(v) for k, v in sorted(per_frame.items(), key=lambda kv: -kv[1])[:top]}}


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process so far (all its threads); 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    """The process's children, their children, ... (Linux /proc)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                kids = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            out += kids
            todo += kids
    return out


def cpu_snapshot(server_pid: int) -> dict[str, dict[int, float]]:
    """CPU seconds so far of the server process and of each engine process (its descendants)."""
    return {"server": {server_pid: cpu_seconds(server_pid)},
            "engine": {p: cpu_seconds(p) for p in descendants(server_pid)}}


def autogroup_nice(pid: int) -> int | None:
    """The CPU weight of the process's session under Linux autogroup (its nice), None where unreadable."""
    try:
        return int(Path(f"/proc/{pid}/autogroup").read_text().rsplit("nice", 1)[1])
    except (OSError, ValueError, IndexError):
        return None


def cpu_used(before: dict, after: dict) -> dict[str, float]:
    """CPU seconds used between two snapshots, per part (a process started in between counts from 0)."""
    return {part: round(sum(s - before[part].get(p, 0.0) for p, s in after[part].items()), 1) for part in after}


def math_isnan(x: float) -> bool:
    return x != x


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return round(values[lo] + (values[hi] - values[lo]) * (k - lo), 3)


def server_log_errors(text: str) -> list[str]:
    lines = text.splitlines()
    bad = []
    for i, line in enumerate(lines):
        if "Traceback (most recent call last)" in line or "Uncaught app execution" in line or \
                "Uncaught exception" in line:
            bad.append(" | ".join(lines[max(0, i - 1): i + 12])[:800])
    return bad


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=24, help="concurrent virtual users (>= 20 for the issue)")
    ap.add_argument("--duration", type=float, default=120.0, help="seconds of load (new sessions stop after this)")
    ap.add_argument("--max-requests", type=int, default=5000,
                    help="sessions in all, at most (a guard: the duration ends a normal run)")
    ap.add_argument("--mix", default="hit=0.55,cold=0.15,same=0.1,invalid=0.2", help="request mix")
    ap.add_argument("--burst", type=int, default=4, help="'same' requests sharing one new slider value")
    ap.add_argument("--warm", type=int, default=5, help="scenarios computed before the load (the hits)")
    ap.add_argument("--max-cold", type=int, default=12, help="cold runs in all, at most (then hits instead)")
    ap.add_argument("--cold", choices=["jammer", "seed"], default="jammer",
                    help="what makes a cold request new: a jammer power never asked (default) or a new seed")
    ap.add_argument("--page", default="fusion", help="page url path that shows a result")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds one tab waits before giving up")
    ap.add_argument("--come-back-timeout", type=float, default=900.0,
                    help="seconds a tab opened again (after one gave up) may wait for the result")
    ap.add_argument("--think", type=float, default=0.5, help="mean pause between a user's sessions, s")
    ap.add_argument("--cache-dir", default=None, help="result cache folder (default: a fresh temporary one)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "out" / "bench_load.json"))
    ap.add_argument("--base-query", default="", help="extra link parameters on every request, e.g. "
                    "'fusion.lambda_mode=heuristic&evaluation.samples_per_task=100'")
    ap.add_argument("--zoo-dir", default=None, help="benchmark only: serve this zoo directory as 'tiny'")
    ap.add_argument("--profile", default=None, help="run the server under py-spy (pip install py-spy) and write "
                    "its GIL-holding stacks here (collapsed format); the summary lists where the time went")
    args = ap.parse_args(argv)
    print_header(None)  # where it ran: torch build, CPU flags, threads (benchmarks/where.py)
    if args.sessions < 1 or args.duration <= 0 or args.max_requests < 1:
        ap.error("sessions, duration and max-requests must be positive")

    mix = {k: float(v) for k, v in (p.split("=") for p in args.mix.split(","))}
    base_query = dict(parse_qsl(args.base_query, keep_blank_values=True))
    rng = random.Random(args.seed)
    tmp = tempfile.mkdtemp(prefix="rmtllmf-bench-load-")
    cache_dir = args.cache_dir or os.path.join(tmp, "cache")
    log_path = Path(tmp) / "server.log"
    port = free_port()
    extra_env = {}
    if args.zoo_dir:
        extra_env["BENCH_ZOO_DIR"] = str(Path(args.zoo_dir).resolve())
    print(f"server: 127.0.0.1:{port}, cache {cache_dir}, log {log_path}; "
          f"zoo: {args.zoo_dir or 'tiny (embedded)'}")

    cpu0 = time.process_time()
    proc = start_server(port, cache_dir, log_path, extra_env, args.profile)
    report: dict = {"base_query": base_query, "cold_kind": args.cold, "max_cold": args.max_cold,
                    "sessions": args.sessions, "duration_s": args.duration, "mix": mix, "page": args.page,
                    "zoo_dir": args.zoo_dir, "cores": os.cpu_count()}
    outcomes: list[Outcome] = []
    try:
        report["startup_s"] = round(wait_healthy(port, proc, 120), 2)
        try:
            from rmtllmf_core.serve.hosting import limits
            report["max_concurrent_jobs"] = limits().max_concurrent_jobs
        except Exception:  # noqa: BLE001
            pass

        # warm-up: the default view (what a bad link falls back to) and the hit scenarios, one at a time
        # the hits: the default view and a few attacks / jammer powers (what people click through)
        attacks = ["white", "worst_sum_rate", "worst_strongest_user"]
        warm_queries = [dict(base_query)] + [
            {**base_query, "wireless.attack": attacks[i % 3], "wireless.jammer_power_w": f"{10 ** (-13 + i // 3):.0e}"}
            for i in range(args.warm)]
        warm = []
        for q in warm_queries:
            o = open_session(port, args.page, q, "warmup", args.timeout)
            warm.append(o)
            print(f"warm-up {q or 'default'}: result={o.result} {o.seconds:.2f}s {o.failure or ''}{o.exception} {o.texts[:2]}")
        report["warmup"] = [{"query": o.query, "seconds": round(o.seconds, 3), "result": o.result,
                             "failure": o.failure, "exception": o.exception} for o in warm]
        hit_queries = [q for q, o in zip(warm_queries, warm) if o.result]
        if not hit_queries:
            raise RuntimeError("warm-up produced no result: is the app able to compute? see " + str(log_path))

        lock = threading.Lock()
        issued = [0]
        cold_seed = [rng.randrange(1_000_000)]
        cold_issued = [0]
        burst = {"query": None, "left": 0}
        t_end = time.monotonic() + args.duration

        def new_power() -> dict:
            # a slider move: a jammer power never asked before (the seed's memos are reused)
            cold_seed[0] += 1
            return {**base_query, "wireless.attack": "worst_sum_rate",
                    "wireless.jammer_power_w": f"{1e-13 * (1 + cold_seed[0] % 100_000 / 1e5):.8e}"}

        def next_request(r: random.Random):
            with lock:
                if issued[0] >= args.max_requests or time.monotonic() >= t_end:
                    return None
                issued[0] += 1
                kind = r.choices(list(mix), weights=list(mix.values()))[0]
                if kind == "same" and burst["left"] == 0:
                    if cold_issued[0] >= args.max_cold:
                        kind = "hit"
                    else:   # a new burst: one computation that `--burst` sessions ask for at once
                        cold_issued[0] += 1
                        burst.update(query=new_power(), left=max(1, args.burst))
                if kind == "same":
                    burst["left"] -= 1
                    return kind, dict(burst["query"])
                if kind == "cold" and cold_issued[0] >= args.max_cold:
                    kind = "hit"
                if kind == "cold":
                    cold_issued[0] += 1
                    if args.cold == "seed":   # everything new, the realignment control included
                        cold_seed[0] += 1
                        return kind, {**base_query, "seed": str(cold_seed[0])}
                    return kind, new_power()
            if kind == "hit":
                return kind, dict(r.choice(hit_queries))
            return kind, {**base_query, **r.choice(INVALID_LINKS)}

        def user(i: int):
            r = random.Random(args.seed * 1000 + i)
            time.sleep(r.uniform(0, 2.0))  # stagger the first tabs
            while True:
                req = next_request(r)
                if req is None:
                    return
                o = open_session(port, args.page, req[1], req[0], args.timeout)
                with lock:
                    outcomes.append(o)
                time.sleep(r.expovariate(1.0 / args.think) if args.think > 0 else 0)

        # under py-spy the server is py-spy's child: its CPU is then counted with the engine processes
        snap0, gen0, t0 = cpu_snapshot(proc.pid), time.process_time(), time.monotonic()
        threads = [threading.Thread(target=user, args=(i,), daemon=True) for i in range(args.sessions)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(args.duration + args.timeout + 60)
        report["wall_s"] = round(time.monotonic() - t0, 1)
        report["cpu_s_during_load"] = {**cpu_used(snap0, cpu_snapshot(proc.pid)),
                                       "load_generator": round(time.process_time() - gen0, 1)}
        # the host's `pages_nice`: how much of the CPU the pages yield to the computations
        report["autogroup_nice"] = {"server": autogroup_nice(proc.pid),
                                    "engine": sorted({autogroup_nice(p) for p in descendants(proc.pid)} - {None})}

        # People who gave up waiting come back later: a new tab with the same link must show the
        # result (from the cache, or by joining the computation still in flight).
        gave_up = [o for o in outcomes if o.kind in ("hit", "cold", "same") and not o.result and o.failure.endswith(
            ("timeout", "timed out"))]
        came_back = []
        for o in gave_up:
            again = open_session(port, args.page, dict(parse_qsl(o.query, keep_blank_values=True)), o.kind,
                                 args.come_back_timeout)
            came_back.append(again)
            o.came_back_with_result = again.result
        report["came_back"] = {"sessions": len(came_back), "with_result": sum(a.result for a in came_back),
                               "seconds": [round(a.seconds, 1) for a in came_back]}
    finally:
        stop_server(proc, profiling=bool(args.profile))
        log_text = log_path.read_text(errors="replace") if log_path.exists() else ""

    # ---- summary ----------------------------------------------------------------------------------
    by_kind = {k: [o for o in outcomes if o.kind == k] for k in ("hit", "cold", "same", "invalid")}
    exceptions = [o for o in outcomes + warm if o.exception]
    timeouts = [o for o in outcomes if o.failure.endswith(("timeout", "timed out"))]
    failures = [o for o in outcomes if o.failure and o not in timeouts]
    log_errors = server_log_errors(log_text)
    lost = [o for o in by_kind["hit"] + by_kind["cold"] + by_kind["same"]
            if not o.result and not o.came_back_with_result]
    invalid_bad = [o for o in by_kind["invalid"] if not o.error_shown or o.exception]
    report.update({
        "sessions_served": sum(1 for o in outcomes if o.finished),
        "requests": {k: len(v) for k, v in by_kind.items()},
        "server_errors": len(exceptions) + len(log_errors) + len(failures),
        "exceptions_shown": [o.exception for o in exceptions][:10],
        "server_log_errors": log_errors[:10],
        "connection_failures": [o.failure for o in failures][:10],
        "client_timeouts": len(timeouts),   # the tab gave up waiting (see came_back), not a server error
        "lost_results": len(lost),
        "lost_examples": [asdict(o) for o in lost[:5]],
        "invalid_without_message": len(invalid_bad),
        "cold_runs_that_waited_in_line": sum(o.waited_in_line for o in by_kind["cold"] + by_kind["same"]),
        "kb_per_hit_session_p50": pct([o.bytes_received / 1024 for o in by_kind["hit"] if o.result], 0.5),
        # the load generator shares the cores with the server: what it took of them
        "load_generator_cpu_s": round(time.process_time() - cpu0, 1),
        # where the two cores went during the load: the server's own process (pages, websockets) per
        # session served, and the engine processes (the cold runs)
        "server_cpu_ms_per_session": (round(1000 * report["cpu_s_during_load"]["server"] / max(1, sum(
            1 for o in outcomes if o.finished)), 1) if "cpu_s_during_load" in report and not args.profile else None),
        "time_to_result_s": {
            k: {"n": len(v), "p50": pct([o.seconds for o in v if o.result], 0.5),
                "p95": pct([o.seconds for o in v if o.result], 0.95),
                "max": pct([o.seconds for o in v if o.result], 1.0)}
            for k, v in by_kind.items() if k != "invalid"},
        "time_to_message_s": {"invalid": {"n": len(by_kind["invalid"]),
                                          "p50": pct([o.seconds for o in by_kind["invalid"] if o.error_shown], 0.5),
                                          "p95": pct([o.seconds for o in by_kind["invalid"] if o.error_shown], 0.95)}},
        "server_log": str(log_path),
    })
    if args.profile:
        # py-spy writes its file when the server it sampled exits (stop_server above)
        for _ in range(40):
            if Path(args.profile).exists():
                break
            time.sleep(0.5)
        report["profile"] = profile_summary(Path(args.profile)) if Path(args.profile).exists() else "not written"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k not in ("warmup", "lost_examples", "profile")}, indent=2))
    if isinstance(report.get("profile"), dict):
        print("where the server's GIL time went (% of samples; a sample counts under every label it matches):")
        for label, share in report["profile"]["percent_by_label"].items():
            print(f"  {share:5.1f}%  {label}")
        print("heaviest frames of our code (inclusive %):")
        for frame, share in list(report["profile"]["heaviest_own_frames_percent"].items())[:15]:
            print(f"  {share:5.1f}%  {frame}")
    print()
    print(summary_table(report))
    ok = report["server_errors"] == 0 and report["lost_results"] == 0 and report["invalid_without_message"] == 0
    print("PASS" if ok else "FAIL", f"(report: {args.out})")
    return 0 if ok else 1


TARGETS_S = {"hit": 1.0, "cold": 30.0, "same": 30.0}  # issue 33: time to result, p95


def summary_table(report: dict) -> str:
    """The figures in one table (markdown), each against its target."""
    rows = [f"| {report['sessions']} sessions, {report['duration_s']:g} s, {report['cores']} cores | n | p50 (s) "
            f"| p95 (s) | max (s) | target | met |", "|---|---|---|---|---|---|---|"]
    for kind, t in report["time_to_result_s"].items():
        target = TARGETS_S.get(kind)
        met = "-" if t["p95"] is None or target is None else ("yes" if t["p95"] < target else "**no**")
        rows.append(f"| time to result: {kind} | {t['n']} | {t['p50']} | {t['p95']} | {t['max']} | "
                    f"p95 < {target:g} s | {met} |")
    inv = report["time_to_message_s"]["invalid"]
    rows.append(f"| time to message: invalid link | {inv['n']} | {inv['p50']} | {inv['p95']} | - | - | - |")
    for label, key in (("sessions served", "sessions_served"), ("kB sent per cache-hit session (p50)",
                                                                 "kb_per_hit_session_p50"),
                       ("CPU seconds the load generator used", "load_generator_cpu_s"),
                       ("CPU seconds during the load (server, engine processes, load generator)",
                        "cpu_s_during_load"),
                       ("server CPU per session served (ms)", "server_cpu_ms_per_session"),
                       ("CPU priority, autogroup nice (server, engine processes)", "autogroup_nice"),
                       ("server errors", "server_errors"),
                       ("lost results", "lost_results"), ("bad links without a message", "invalid_without_message"),
                       ("cold runs that waited in line", "cold_runs_that_waited_in_line")):
        want = {"server_errors": 0, "lost_results": 0, "invalid_without_message": 0}.get(key)
        value = report.get(key)
        met = "-" if want is None else ("yes" if value == want else "**no**")
        shown = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in value.items()) if isinstance(value, dict) else value
        rows.append(f"| {label} | {shown} | | | | {'-' if want is None else want} | {met} |")
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
