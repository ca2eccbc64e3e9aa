"""Hosting: limits from secrets / environment, caps with clear messages, password hashing and the
CLI, the access gate on and off (AppTest with secrets), and the app's heavy-work door
(`run_heavy`): caps before the queue, identical requests computed once, place in line shown."""
from __future__ import annotations

import io
import threading

import pytest
from streamlit.testing.v1 import AppTest

from rmtllmf_core import commands as cli
from rmtllmf_core.serve import hosting, jobs
from rmtllmf_core.experiment import pipeline
from rmtllmf_core.studies import sweeps
from rmtllmf_core.cache import ResultCache
from rmtllmf_core.errors import CapExceeded, InputError
from rmtllmf_core.serve.hosting import (AccessConfig, FailureWindow, HostLimits, access_config, check_work,
    check_scenario, check_sweep, email_allowed, hash_password, load_limits, verify_password)
from rmtllmf_core.experiment.presets import preset_scenario
from rmtllmf_core.experiment.scenario import Scenario
from rmtllmf_core.studies.work import Work

TASKS8 = ("digits", "house_numbers", "traffic_signs", "textures", "land_cover", "aerial_scenes", "vehicles", "scenes")


def base(**changes) -> Scenario:
    # a fixed budget under LIM's 50 below, whatever the calibrated default
    s = Scenario.parse({"tasks": list(TASKS8[:4]), "defense": {"realign_steps": 30}})
    return s.replace(**changes) if changes else s


# ---- limits -----------------------------------------------------------------------------------

def test_default_limits_suit_a_small_host():
    lim = load_limits({}, env={})
    assert lim.max_concurrent_jobs == hosting.default_concurrent_jobs()
    assert [hosting.default_concurrent_jobs(c) for c in (1, 2, 3, 4, 16)] == [1, 2, 2, 2, 8]
    assert lim.max_realign_steps <= 500 and lim.max_samples_per_task <= 10_000
    assert lim.max_combinations >= 247  # the paper's Fig. 2 on 8 tasks fits


def test_limits_from_secrets_then_environment():
    lim = load_limits({"limits": {"max_sweep_points": 100, "max_concurrent_jobs": 3}},
                      env={"RMTLLMF_MAX_SWEEP_POINTS": "50", "RMTLLMF_MAX_REALIGN_STEPS": " 20 "})
    assert (lim.max_sweep_points, lim.max_concurrent_jobs, lim.max_realign_steps) == (50, 3, 20)


@pytest.mark.parametrize("secrets, env, field", [
    ({"limits": {"max_sweep_points": -1}}, {}, "limits.max_sweep_points"),
    ({"limits": {"max_swep_points": 10}}, {}, "limits.max_swep_points"),
    ({}, {"RMTLLMF_MAX_CONCURRENT_JOBS": "lots"}, "limits.max_concurrent_jobs"),
    ({"limits": "fast"}, {}, "limits"),
])
def test_bad_limits_name_the_setting(secrets, env, field):
    with pytest.raises(InputError) as err:
        load_limits(secrets, env=env)
    assert err.value.field == field


# ---- caps ---------------------------------------------------------------------------------------

# computed in this process, where the tests count the engine's calls (engine processes: test_compute.py)
LIM = HostLimits.parse({"max_realign_steps": 50, "max_samples_per_task": 300, "max_sweep_points": 20,
                        "max_combinations": 10, "max_concurrent_jobs": 1, "engine_processes": False})


def test_caps_name_the_field_and_the_host_limit():
    check_scenario(base(), HostLimits.parse({}))
    with pytest.raises(CapExceeded) as err:
        check_scenario(base(**{"evaluation.samples_per_task": 301}), LIM)
    assert err.value.field == "evaluation.samples_per_task"
    assert "at most 300" in str(err.value) and "301" in str(err.value) and "max_samples_per_task" in str(err.value)
    with pytest.raises(CapExceeded) as err:
        check_scenario(base(**{"defense.realign": True, "defense.realign_steps": 51}), LIM)
    assert err.value.field == "defense.realign_steps" and "at most 50" in str(err.value)
    # steps only matter when realignment is on
    check_scenario(base(**{"defense.realign": False, "defense.realign_steps": 500}), LIM)
    with pytest.raises(CapExceeded) as err:
        check_scenario(base(**{"defense.realign": True, "defense.realign_batch_size": 65}), HostLimits.parse({}))
    assert err.value.field == "defense.realign_batch_size" and "at most 64" in str(err.value)
    assert "max_realign_batch_size" in str(err.value)
    assert isinstance(err.value, InputError)  # the app shows it like any bad value


def test_sweep_caps_points_and_combinations():
    s8 = Scenario.parse({"tasks": list(TASKS8)})
    points = sweeps.tasks_points(s8, [("none", "none")], sizes=[2])  # C(8,2) = 28 combinations
    with pytest.raises(CapExceeded) as err:
        check_sweep(points, LIM.model_copy(update={"max_sweep_points": 100}))
    assert err.value.field == "sizes" and "28" in str(err.value)
    with pytest.raises(CapExceeded) as err:
        check_sweep(points, LIM)
    assert err.value.field == "sweep" and "at most 20 points" in str(err.value)
    check_sweep(points[:5], LIM)


def test_check_work_knows_runs_and_sweeps_by_value():
    heavy = base(**{"evaluation.samples_per_task": 5000})
    with pytest.raises(CapExceeded):
        check_work(Work.single_run(heavy), LIM)
    with pytest.raises(CapExceeded, match="points per sweep"):
        check_work(sweeps.snr_work(base(), list(range(-140, -98, 2)), ["white"], ["none"]), LIM)
    ablation = sweeps.ablation_work(base(), [1, 5])
    check_work(ablation, LIM)
    assert len(ablation.points) == 2 + 2 * 2  # neither, freeze, realign x2, both x2
    # a sweep's points are checked one by one too, whoever built them
    with pytest.raises(CapExceeded) as err:
        check_work(Work.sweep([({}, base()), ({}, heavy)]), LIM)
    assert err.value.field == "evaluation.samples_per_task"


# ---- passwords ----------------------------------------------------------------------------------

def test_password_hash_round_trip_and_refusals():
    h = hash_password("correct horse battery")
    assert h.startswith("scrypt$") and "correct" not in h
    assert verify_password("correct horse battery", h)
    assert not verify_password("correct horse batterY", h)
    assert not verify_password("", h)
    assert hash_password("same") != hash_password("same")             # random salt
    assert hash_password("same", salt=b"0" * 16) == hash_password("same", salt=b"0" * 16)
    parts = h.split("$")
    for bad in ("", "plain", "scrypt$1$2$3", "$".join(parts[:5] + ["AAAA"]), "$".join(["md5"] + parts[1:]),
                "$".join(parts[:1] + ["1024000"] + parts[2:]), h.replace("scrypt$16384", "scrypt$16383")):
        assert not verify_password("correct horse battery", bad)
    with pytest.raises(InputError):
        hash_password("")


def test_hash_password_cli_prints_a_secrets_entry(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough password\n"))
    assert cli.main(["hash-password", "--stdin"]) == 0
    out = capsys.readouterr().out
    assert "[access]" in out and "a long enough password" not in out
    line = next(l for l in out.splitlines() if l.startswith("password_hash"))
    assert verify_password("a long enough password", line.split('"')[1])
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert cli.main(["hash-password", "--stdin"]) == 2


def test_failure_window_slows_guessing():
    now = [0.0]
    w = FailureWindow(max_failures=3, window_s=60, clock=lambda: now[0])
    for _ in range(3):
        assert w.blocked_for() == 0
        w.record_failure()
    assert w.blocked_for() == pytest.approx(60)
    now[0] = 61
    assert w.blocked_for() == 0


def test_access_config_parsing():
    assert not access_config({}).enabled
    h = hash_password("pw-pw-pw-pw")
    cfg = access_config({"access": {"password_hash": h, "allowed_domains": ["@Lab.org"]}, "auth": {"client_id": "x"}})
    assert cfg.enabled and cfg.oidc and cfg.password_hash == h
    assert email_allowed(cfg, "Ann@lab.org") and not email_allowed(cfg, "eve@evil.org") and not email_allowed(cfg, None)
    assert email_allowed(AccessConfig(oidc=True), "anyone@anywhere")
    for bad, field in (({"access": {"password_hash": "hunter2"}}, "access.password_hash"),
                       ({"access": {"pasword_hash": h}}, "access.pasword_hash"),
                       ({"access": {"allowed_emails": [1]}}, "access.allowed_emails"),
                       ({"access": "open"}, "access")):
        with pytest.raises(InputError) as err:
            access_config(bad)
        assert err.value.field == field


# ---- the gate, in a real Streamlit script run ---------------------------------------------------

def gated_app():
    import streamlit as st

    from studio import access

    if not access.require_access():
        st.stop()
    st.markdown("INSIDE: the app and its engine calls")


def texts(at):
    return [m.value for m in at.markdown]


def new_app(**secrets):
    at = AppTest.from_function(gated_app, default_timeout=30)
    for k, v in secrets.items():
        at.secrets[k] = v
    return at.run()


def test_access_off_when_nothing_is_configured():
    at = new_app()
    assert not at.exception and texts(at) == ["INSIDE: the app and its engine calls"]
    assert not at.text_input


def test_password_gate_shows_only_the_form_until_the_right_password():
    at = new_app(access={"password_hash": hash_password("open sesame!")})
    assert not at.exception and texts(at) == [] and [t.label for t in at.text_input] == ["Password"]
    at.text_input[0].input("not it")
    at.button[0].click().run()
    assert texts(at) == [] and any("Wrong password" in e.value for e in at.error)
    at.text_input[0].input("open sesame!")
    at.button[0].click().run()
    assert texts(at) == ["INSIDE: the app and its engine calls"] and not at.text_input
    at.run()  # stays in for the rest of the session
    assert texts(at) == ["INSIDE: the app and its engine calls"]


def test_a_broken_access_config_keeps_the_door_shut():
    at = new_app(access={"password_hash": "plaintext-password"})
    assert texts(at) == [] and any("unusable" in e.value for e in at.error)


OIDC = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "s" * 32, "client_id": "id",
        "client_secret": "secret", "server_metadata_url": "https://idp.invalid/.well-known/openid-configuration"}


def test_oidc_gate_without_a_signed_in_user_shows_no_app():
    at = new_app(auth=OIDC)
    assert texts(at) == [] and not at.exception
    assert at.error or at.button  # the sign-in button, or a note that Authlib is missing


def test_oidc_signed_in_user_is_admitted_by_email(monkeypatch):
    from studio import access

    monkeypatch.setattr(access, "_oidc_user", lambda: (True, "ann@lab.org"))
    assert texts(new_app(auth=OIDC, access={"allowed_domains": ["lab.org"]})) == ["INSIDE: the app and its engine calls"]
    monkeypatch.setattr(access, "_oidc_user", lambda: (True, "eve@elsewhere.org"))
    at = new_app(auth=OIDC, access={"allowed_domains": ["lab.org"]})
    assert texts(at) == []


# ---- run_heavy: caps, queue, sharing, cache ---------------------------------------------------

@pytest.fixture(scope="module")
def micro(registered_micro_zoo):
    return registered_micro_zoo


@pytest.fixture
def host(tmp_path, monkeypatch):
    from rmtllmf_core.experiment import runtime

    cache = ResultCache(tmp_path / "cache")
    monkeypatch.setattr(runtime, "_default_cache", cache)   # the host's disk cache
    queue = jobs.JobQueue(1)
    jobs.set_default_queue(queue)
    hosting.set_limits(LIM)
    yield cache, queue
    jobs.set_default_queue(None)
    hosting.set_limits(None)
    cache.close()


def small(zoo, **changes):
    s = preset_scenario("paper_worst_sum_rate", tasks=zoo.task_names, zoo=zoo.name)
    return s.replace(**{"evaluation.samples_per_task": 40, "defense.realign_steps": 5, **changes})


def test_run_heavy_refuses_over_cap_before_queueing(micro, host):
    cache, queue = host
    with pytest.raises(CapExceeded) as err:
        hosting.run_heavy(Work.single_run(small(micro, **{"defense.realign_steps": 80})))
    assert err.value.field == "defense.realign_steps"
    assert queue.stats() == {"running": 0, "waiting": 0, "max_running": 1, "completed": 0}


def test_run_heavy_computes_identical_requests_once_and_caches(micro, host, monkeypatch):
    cache, queue = host
    s = small(micro)
    calls = []
    real_compute = pipeline.compute
    monkeypatch.setattr(pipeline, "compute", lambda *a, **k: calls.append(1) or real_compute(*a, **k))
    results = [None] * 4

    def session(i):
        results[i] = hosting.run_heavy(Work.single_run(s), progress=lambda f, m: None)

    threads = [threading.Thread(target=session, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(calls) == 1 and all(r is not None and r.key == results[0].key for r in results)
    assert pipeline.cached(s, cache=cache).key == results[0].key
    # a cache hit skips the line entirely
    completed = queue.stats()["completed"]
    assert hosting.run_heavy(Work.single_run(s)).key == results[0].key
    assert queue.stats()["completed"] == completed


def test_work_keys_identify_identical_work(micro):
    s = small(micro)
    k = Work.single_run(s).key
    assert k == Work.single_run(Scenario.parse(s.to_dict())).key
    assert k != Work.single_run(s.replace(seed=1)).key
    assert k != Work.sweep([({}, s)]).key                     # a run answers a result, a sweep rows
    a, b = sweeps.ablation_work(s, [1]), sweeps.ablation_work(s.replace(**{"defense.realign_lr": 1e-3}), [1])
    assert a.key == sweeps.ablation_work(s, [1]).key and a.key != b.key



def waiting_app():
    import streamlit as st

    from studio import waiting

    seen = st.session_state.setdefault("seen", [])

    def job(progress):
        progress(0.5, "computing")
        return "job result"

    class Request:  # a HeavyRequest whose work is any function (the waiting room does not look inside)
        key, cached = "a test job", False
        work = type("W", (), {"preemptible": False})()

        def compute(self, progress=None):
            return job(progress)

    out = waiting.wait_for(Request(), progress=lambda f, m: seen.append(m))
    st.markdown(f"RESULT {out}")
    st.markdown(" | ".join(dict.fromkeys(seen)))


def test_a_session_sees_its_place_in_line_then_its_result():
    queue = jobs.JobQueue(1)
    jobs.set_default_queue(queue)
    hosting.set_limits(HostLimits.parse({"engine_processes": False}))
    release = threading.Event()
    blocker = queue.submit("someone else's long run", lambda p: release.wait(30))

    def release_once_the_session_waits():
        for _ in range(3000):
            if queue.stats()["waiting"] == 1:
                threading.Event().wait(0.8)  # long enough for a few polls of the waiting session
                break
            threading.Event().wait(0.01)
        release.set()

    timer = threading.Thread(target=release_once_the_session_waits, daemon=True)
    timer.start()
    try:
        at = AppTest.from_function(waiting_app, default_timeout=30).run()
        assert not at.exception
        assert texts(at)[0] == "RESULT job result"
        assert "waiting in line: next" in texts(at)[1]
        blocker.result(5)
    finally:
        release.set()
        timer.join(5)
        jobs.set_default_queue(None)
        hosting.set_limits(None)


# ---- the real app behind the gate (once app.py calls it) ----------------------------------------

APP = __import__("pathlib").Path(__file__).resolve().parent.parent / "app.py"


@pytest.mark.skipif(not APP.exists() or "require_access" not in APP.read_text(),
                    reason="app.py does not call access.require_access yet")
def test_the_app_behind_a_password_shows_only_the_form_and_calls_no_engine(monkeypatch):
    def engine_called(*a, **k):
        raise AssertionError("an engine call ran before sign-in")

    for name in ("run", "cached", "get_engine", "get_zoo"):
        monkeypatch.setattr(pipeline, name, engine_called)
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.secrets["access"] = {"password_hash": hash_password("the host's password")}
    at.query_params["seed"] = "7"   # a shared link: it carries the scenario, never a credential
    at.run()
    assert not at.exception
    assert [t.label for t in at.text_input] == ["Password"]
    assert not at.get("plotly_chart") and not at.metric and not at.sidebar.button


def test_host_check_prints_what_will_be_enforced(monkeypatch, capsys):
    import json as _json

    monkeypatch.setattr(hosting, "read_secrets", lambda strict=True: {
        "limits": {"max_sweep_points": 300}, "access": {"password_hash": hash_password("pw-pw-pw-pw")}})
    monkeypatch.setenv("RMTLLMF_MAX_CONCURRENT_JOBS", "2")
    assert cli.main(["host-check"]) == 0
    out = _json.loads(capsys.readouterr().out)
    assert out["limits"]["max_sweep_points"] == 300 and out["limits"]["max_concurrent_jobs"] == 2
    assert out["access"]["password"] and not out["access"]["open_to_anyone_who_reaches_the_port"]
    monkeypatch.setattr(hosting, "read_secrets", lambda strict=True: {"access": {"password_hash": ""}})
    assert cli.main(["host-check"]) == 2   # an empty hash is refused, never read as "no password"


# ---- Cancel in a served app (real server, real websocket protocol) --------------------------------

CANCEL_APP = '''
import time
import streamlit as st
from rmtllmf_core.serve import jobs
from studio import waiting

if st.query_params.get("stats"):
    st.markdown("STATS " + str(jobs.default_queue().stats()))
    st.stop()

def job(progress=None):
    for i in range(30000):
        time.sleep(0.01)
        progress(i / 30000, f"step {i}")
    return "finished"

class Request:  # a HeavyRequest whose work is any function
    key, cached = "a long test job", False
    work = type("W", (), {"preemptible": False})()

    def compute(self, progress=None):
        return job(progress)

bar = st.progress(0.0)
try:
    out = waiting.wait_for(Request(), progress=lambda f, m: bar.progress(f, text=m))
    st.markdown(f"RESULT {out}")
except jobs.JobCancelled as exc:
    st.markdown(f"CANCELLED {exc}")
'''


def _served(tmp_path, script: str):
    import os
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    app = tmp_path / "app.py"
    app.write_text(script)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(APP.parent), "RMTLLMF_CACHE_DIR": str(tmp_path / "cache")}
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(app), "--server.address", "127.0.0.1",
                             "--server.port", str(port), "--server.headless", "true",
                             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    end = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > end:
                proc.kill()
                pytest.fail((tmp_path / "server.log").read_text()[-2000:])
            time.sleep(0.2)
    return proc, port


class Tab:
    """A minimal browser tab over Streamlit's websocket protocol."""

    def __init__(self, port: int, query: str = ""):
        import websocket

        self.ws = websocket.create_connection(f"ws://127.0.0.1:{port}/_stcore/stream", subprotocols=["streamlit"],
                                              timeout=60)
        self.query = query

    def rerun(self, widgets=()):
        from streamlit.proto.BackMsg_pb2 import BackMsg

        msg = BackMsg()
        msg.rerun_script.query_string = self.query
        for wid in widgets:
            w = msg.rerun_script.widget_states.widgets.add()
            w.id, w.trigger_value = wid, True
        self.ws.send_binary(msg.SerializeToString())

    def read_until(self, predicate, timeout=60):
        import time

        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        end = time.monotonic() + timeout
        while time.monotonic() < end:
            fwd = ForwardMsg()
            fwd.ParseFromString(self.ws.recv())
            el = fwd.delta.new_element if fwd.WhichOneof("type") == "delta" else None
            got = predicate(fwd, el)
            if got:
                return got
        raise AssertionError("timed out")


def _markdown_starting(prefix):
    def pred(fwd, el):
        if el is not None and el.WhichOneof("type") == "markdown" and el.markdown.body.startswith(prefix):
            return el.markdown.body
    return pred


@pytest.mark.slow
def test_cancel_button_stops_the_job_and_the_rerun_does_not_restart_it(tmp_path):
    import os
    import signal
    import time

    proc, port = _served(tmp_path, CANCEL_APP)
    try:
        tab = Tab(port)
        tab.rerun()

        def cancel_button_and_running(fwd, el, seen={}):
            if el is not None and el.WhichOneof("type") == "button" and el.button.label == "Cancel":
                seen["id"] = el.button.id
            if el is not None and el.WhichOneof("type") == "progress" and el.progress.text.startswith("step"):
                seen["running"] = True
            return seen.get("id") if seen.get("running") else None

        button = tab.read_until(cancel_button_and_running)
        tab.rerun(widgets=[button])                       # the click
        assert tab.read_until(_markdown_starting("CANCELLED")).startswith("CANCELLED cancelled")
        time.sleep(0.5)
        stats = Tab(port, "stats=1")
        stats.rerun()
        text = stats.read_until(_markdown_starting("STATS"))
        assert "'running': 0" in text and "'waiting': 0" in text and "'completed': 1" in text, text
        log = (tmp_path / "server.log").read_text()
        assert "Traceback" not in log, log[-3000:]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)


def test_core_reads_the_secrets_files_with_tomllib(tmp_path):
    user, app = tmp_path / "user.toml", tmp_path / "app.toml"
    user.write_text('[limits]\nmax_sweep_points = 10\n[access]\nallowed_domains = ["a.org"]\n')
    app.write_text('[limits]\nmax_sweep_points = 20\n')
    # the app folder's file comes last and its tables replace the user's
    assert hosting.read_secrets(files=[user, app]) == {"limits": {"max_sweep_points": 20},
                                                       "access": {"allowed_domains": ["a.org"]}}
    assert hosting.read_secrets(files=[tmp_path / "none.toml"]) == {}
    app.write_text("[limits\n")  # a file that exists but does not parse keeps access shut
    with pytest.raises(hosting.SecretsUnreadable):
        hosting.read_secrets(files=[user, app])
    assert hosting.read_secrets(strict=False, files=[user, app]) == {}


def test_the_host_sends_sweeps_to_a_configured_cluster_only():
    from rmtllmf_core.serve import hosting

    assert hosting.ray_address({}, {}) is None
    assert hosting.ray_address({"RMTLLMF_RAY_ADDRESS": "head:6379"}, {}) == "head:6379"
    assert hosting.ray_address({}, {"compute": {"ray_address": "auto"}}) == "auto"


def test_the_warm_up_starts_the_engine_processes_before_the_server_loads_the_zoo(monkeypatch):
    """They import torch and load the zoo while the server does: Home's first chart on a fresh cache came
    sooner (bench_app.py's home_chart_fresh_cache_s: medians 24.8 s in six runs before and 21.6 s in six
    after; docs/benchmarks.md)."""
    from studio import engine

    order = []

    class Pool:
        def warm(self, name, count):
            order.append(("engine processes", name, count))

    monkeypatch.setattr(engine, "WARM_UP_DELAY_S", 0.0)
    monkeypatch.setattr(hosting, "limits", lambda: hosting.HostLimits(engine_processes=True, warm_on_start=True,
                                                                       max_concurrent_jobs=2))
    monkeypatch.setattr(hosting, "engine_pool", Pool)
    monkeypatch.setattr(engine, "_warm_story", lambda name: order.append(("story", name)))
    monkeypatch.setattr("gc.freeze", lambda: None)  # the test process's objects stay collectable
    engine._load_quietly(lambda name: order.append(("server loads", name)), "tiny")
    assert order == [("engine processes", "tiny", 2), ("server loads", "tiny"), ("story", "tiny")]

    class Broken:
        def warm(self, name, count):
            raise OSError("cannot start a process")

    order.clear()
    monkeypatch.setattr(hosting, "engine_pool", Broken)  # the server still loads the zoo and warms the story
    engine._load_quietly(lambda name: order.append(("server loads", name)), "tiny")
    assert order == [("server loads", "tiny"), ("story", "tiny")]
