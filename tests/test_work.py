"""Heavy work as one plain value (`work.Work`): keyed once, capped once, read from the cache once."""
from __future__ import annotations

import pytest

from rmtllmf_core.serve import hosting, jobs
from rmtllmf_core.experiment import runtime
from rmtllmf_core.studies import sweeps
from rmtllmf_core.cache import ResultCache
from rmtllmf_core.experiment.presets import preset_scenario
from rmtllmf_core.experiment.scenario import Scenario
from rmtllmf_core.studies.work import Work, execute, spread_control


@pytest.fixture
def host(tmp_path, monkeypatch):
    cache = ResultCache(tmp_path / "cache")
    monkeypatch.setattr(runtime, "_default_cache", cache)
    jobs.set_default_queue(jobs.JobQueue(1))
    yield cache
    jobs.set_default_queue(None)
    cache.close()


def small(zoo, **changes):
    s = preset_scenario("paper_worst_sum_rate", tasks=zoo.task_names, zoo=zoo.name)
    return s.replace(**{"evaluation.samples_per_task": 40, "defense.realign_steps": 3, **changes})


def count(monkeypatch, owner, name):
    calls = []
    real = getattr(owner, name)

    def counted(*a, **k):
        calls.append(a[1:2])
        return real(*a, **k)

    monkeypatch.setattr(owner, name, counted)
    return calls


def test_a_cold_run_is_parsed_hashed_and_read_from_the_cache_once(registered_micro_zoo, host, monkeypatch):
    text = small(registered_micro_zoo).to_dict()     # what a link or a file gives
    validations = count(monkeypatch, Scenario, "model_validate")
    hashes = count(monkeypatch, Scenario, "canonical_json")
    reads = count(monkeypatch, ResultCache, "get")
    work = Work.single_run(text)
    out = hosting.run_heavy(work)                    # caps, cache lookup, queue, the run
    result_reads = lambda: sum(k == (out.key,) for k in reads)  # the stages read their memos too
    assert (len(validations), len(hashes), result_reads()) == (1, 1, 1)
    assert out.key == work.result_keys[0] and work.missing() == 0
    validations.clear(), hashes.clear(), reads.clear()
    again = Work.single_run(text)
    assert hosting.run_heavy(again).key == out.key   # a hit: one read, no computation
    assert (len(validations), len(hashes), len(reads)) == (1, 1, 1)


def test_a_sweep_work_runs_like_the_sweep_and_spreads_its_control(registered_micro_zoo, host):
    base = small(registered_micro_zoo)
    work = sweeps.snr_work(base, [-140.0], ["none", "worst_sum_rate"], ["none", "rmtllmf"])
    assert work.spread_control and not work.single and work.preemptible
    assert work.missing() == len(work.points) == 4
    rows = execute(work)
    assert rows == sweeps.snr_sweep(base, [-140.0], ["none", "worst_sum_rate"], ["none", "rmtllmf"])
    control = {r["defense"]: r["avg_normalized_clean_realigned"] for r in rows}
    assert control["none"] is None and control["rmtllmf"] is not None
    assert len({r["avg_normalized_clean_realigned"] for r in rows if r["defense"] == "rmtllmf"}) == 1
    assert work.missing() == 0


def test_spread_control_fills_the_rows_of_its_defense_only():
    rows = [{"defense": "rmtllmf", "avg_normalized_clean_realigned": 0.9},
            {"defense": "rmtllmf", "avg_normalized_clean_realigned": None},
            {"defense": "none", "avg_normalized_clean_realigned": None},
            {"variant": "both", "avg_normalized_clean_realigned": None}]   # an ablation row has no defense
    assert [r["avg_normalized_clean_realigned"] for r in spread_control(rows)] == [0.9, 0.9, None, None]


def test_a_single_run_has_one_point():
    s = Scenario.parse({"tasks": ["digits"]})
    with pytest.raises(ValueError):
        Work(((({}, s)), ({}, s)), single=True)
    assert Work.single_run(s).single and not Work.single_run(s).preemptible


def test_a_sweep_is_estimated_from_the_seconds_its_cached_points_took(host, registered_micro_zoo):
    from rmtllmf_core.experiment import pipeline

    points = [({"seed": s}, small(registered_micro_zoo, seed=s)) for s in (0, 1, 2)]
    w = Work.sweep(points)
    assert w.measured_seconds() is None                      # nothing computed yet: nothing measured
    r0 = pipeline.run(points[0][1])
    r1 = pipeline.run(points[1][1])
    took = sorted(sum(r.timing_s.values()) for r in (r0, r1))
    assert w.measured_seconds() == pytest.approx(sum(took) / 2)   # the median of the two stored runs
    assert w.missing() == 1


def test_a_built_in_zoos_cache_keys_need_no_weights():
    """A fresh server answers Home from the cache before the zoo has loaded: the key's fingerprint comes
    from the card, and equals the loaded zoo's."""
    from rmtllmf_core.experiment import pipeline

    fresh = runtime.result_fingerprint("tiny")
    assert fresh == runtime.get_engine("tiny").fingerprint
    s = preset_scenario("paper_ideal")
    assert pipeline.result_key(s, fresh) == pipeline.result_key(s, runtime.get_engine("tiny"))
