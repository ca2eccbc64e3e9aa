"""Sweeps in a pool of worker processes: the same rows and cached results as the serial path,
resume from the cache, progress, and errors from inside a worker."""
import functools
import sys
import types

import pytest
import torch

from rmtllmf_core.experiment import pipeline
from rmtllmf_core.studies import sweeps, work
from rmtllmf_core.cache import ResultCache
from rmtllmf_core.errors import InputError
from rmtllmf_core.experiment.presets import preset_scenario


def register_micro_zoo(task_vectors):
    """Worker setup: the micro zoo the parent registered. Built again (deterministically), with the
    parent's task vectors: their fine-tuning sums depend on the thread count it was built on."""
    import dataclasses

    from micro_zoo import make_micro_zoo

    pipeline.register_zoo(dataclasses.replace(make_micro_zoo(n_tasks=3), task_vectors=task_vectors))


def fail_if_called():
    raise AssertionError("no worker should have started")


@pytest.fixture(scope="module")
def zoo(registered_micro_zoo):
    return registered_micro_zoo


def points(zoo):
    base = preset_scenario("paper_worst_sum_rate", tasks=zoo.task_names, zoo=zoo.name).replace(
        **{"evaluation.samples_per_task": 40, "defense.realign_steps": 4})
    return sweeps.tasks_points(base, [("worst_sum_rate", "none"), ("worst_sum_rate", "rmtllmf"),
                                      ("none", "none"), ("none", "rmtllmf")])  # 4 combinations x 4


def strip(result):
    return {k: v for k, v in result.items() if k != "timing_s"}


@pytest.mark.slow
def test_pool_gives_the_serial_rows_and_results(zoo, tmp_path):
    pts = points(zoo)
    serial_cache, pool_cache = ResultCache(tmp_path / "serial"), ResultCache(tmp_path / "pool")
    threads = torch.get_num_threads()
    setup = functools.partial(register_micro_zoo, {t: dict(v) for t, v in zoo.task_vectors.items()})
    torch.set_num_threads(1)  # as in the workers: sums may depend on the thread count
    try:
        pipeline.register_zoo(zoo)  # fresh in-process memos, as in a new worker
        serial = work.run_points(pts, cache=serial_cache)
    finally:
        torch.set_num_threads(threads)
    seen = []
    pooled = work.run_points(pts, cache=pool_cache, workers=2, worker_setup=setup,
                               progress=lambda f, m: seen.append((f, m)))
    assert pooled == serial
    for row in serial:
        assert strip(pool_cache.get(row["key"])) == strip(serial_cache.get(row["key"]))
    assert seen[-1] == (1.0, f"{len(pts)}/{len(pts)}")
    assert [f for f, _ in seen] == sorted(f for f, _ in seen)

    # resume: everything is cached, so no worker starts at all
    assert work.run_points(pts, cache=pool_cache, workers=2, worker_setup=fail_if_called) == serial
    # and a partly cached sweep computes only the rest, with the same rows
    for row in pooled[::3]:
        pool_cache.discard(row["key"])
    assert work.run_points(pts, cache=pool_cache, workers=2, worker_setup=setup) == serial


@pytest.mark.slow
def test_workers_do_not_rerun_the_parents_main_script(zoo, tmp_path, monkeypatch):
    """Streamlit runs a script as a fake `__main__` module naming the script file, and AppTest leaves it
    there; a spawned worker re-runs the script `__main__` names before it starts. After the app tests,
    each sweep worker re-ran app.py, whose zoo warm-up thread then drew from torch's global RNG while
    the worker built its zoo: a different base encoder, wrong rows, depending on timing."""
    ran = tmp_path / "ran"
    script = tmp_path / "app.py"
    script.write_text(f"open({str(ran)!r}, 'a').write('ran ')\n")
    app_main = types.ModuleType("__main__")
    app_main.__file__ = str(script)
    monkeypatch.setitem(sys.modules, "__main__", app_main)
    pts = points(zoo)[:1]  # one cheap point (no realignment): the pool path with a single worker
    setup = functools.partial(register_micro_zoo, {t: dict(v) for t, v in zoo.task_vectors.items()})
    rows = work._run_pool(pts, None, 2, setup, cache=ResultCache(tmp_path / "c"))
    assert not ran.exists(), "a worker re-ran the parent's main script"
    assert sys.modules["__main__"] is app_main  # the parent's own __main__ is back
    assert rows[0]["tasks"] == pts[0][0]["tasks"] and rows[0]["avg_normalized_clean"] <= 1.0


def test_batches_keep_shared_work_in_one_worker(zoo):
    pts = points(zoo)
    batches = work._batches(range(len(pts)), pts, workers=2)
    assert len(batches) == 4 and all(len(b) == 4 for b in batches)   # one combination per batch
    assert {pts[i][0]["tasks"] for b in batches for i in b[:1]} == {p[0]["tasks"] for p in pts}
    assert all(len({pts[i][0]["tasks"] for i in b}) == 1 for b in batches)
    few = pts[:2]                                                       # too few to batch: one point each
    assert work._batches(range(2), few, workers=2) == [[0], [1]]


@pytest.mark.slow
def test_a_worker_error_reaches_the_caller(zoo, tmp_path):
    # workers that cannot load the (registered, not on disk) micro zoo: the loader's error comes back
    with pytest.raises(InputError) as err:
        work.run_points(points(zoo)[:4], cache=ResultCache(tmp_path / "c"), workers=2)
    assert err.value.field == "model"


def test_fig2_points_batch_each_combination_across_conditions(zoo):
    from rmtllmf_core.studies.report import fig2_points

    pts = fig2_points(zoo.name)
    assert len(pts) == 4 * 3                     # C(3,2) + C(3,3) combinations x 3 conditions, R-MTLLMF
    assert {row["defense"] for row, _ in pts} == {"rmtllmf"}
    batches = work._batches(range(len(pts)), pts, workers=2)
    assert sorted(len(b) for b in batches) == [3, 3, 3, 3]
    assert all(len({pts[i][0]["tasks"] for i in b}) == 1 for b in batches)


def test_fig2s_no_defense_rows_are_what_runs_without_the_defense_give(zoo, tmp_path):
    from rmtllmf_core.studies.report import fig2_rows

    cache = ResultCache(tmp_path / "c")
    base = light(zoo)
    pts = sweeps.tasks_points(base, [("worst_sum_rate", "rmtllmf")], sizes=[2])[:2]
    rows = fig2_rows(work.run_points(pts, cache=cache))
    direct = work.run_points(sweeps.tasks_points(base, [("worst_sum_rate", "none")], sizes=[2])[:2], cache=cache)
    derived = [r for r in rows if r["defense"] == "none"]
    assert len(rows) == 4 and len(derived) == 2
    for a, b in zip(derived, direct):
        for k in ("attack", "defense", "n_tasks", "tasks", "avg_normalized", "avg_normalized_clean", "mean_mse",
                  "rejection_rate"):
            assert a[k] == b[k], k
        assert a["avg_normalized"] != next(r for r in rows if r["defense"] == "rmtllmf"
                                           and r["tasks"] == a["tasks"])["avg_normalized"]


def test_sweep_points_skip_the_control_and_the_main_table_keeps_it(zoo, tmp_path, monkeypatch):
    from rmtllmf_core.science import defense
    from rmtllmf_core.studies.report import CONDITIONS, fig2_points

    pts = fig2_points(zoo.name)
    base = preset_scenario("paper_worst_sum_rate", zoo=zoo.name)
    assert base.evaluation.clean_realign_control  # every kind of sweep turns it off in its points
    for points in (pts, sweeps.ablation_points(base, [1]),
                   sweeps.snr_points(base, [-130.0], ["worst_sum_rate"], ["rmtllmf"], control=False)):
        assert not any(s.evaluation.clean_realign_control for _, s in points)
    # ... but the SNR and gain sweeps keep it on one point, R-MTLLMF's (it is one line)
    for points in (sweeps.snr_points(base, [-140.0, -130.0], ["worst_sum_rate", "white"], list(sweeps.DEFENSES)),
                   sweeps.gain_points(base, [0.0, 10.0], ["worst_sum_rate"], list(sweeps.DEFENSES))):
        on = [(row["defense"], row["attack"]) for row, s in points if s.evaluation.clean_realign_control]
        assert on == [("rmtllmf", "worst_sum_rate")]
    on = [row for row, s in sweeps.snr_points(base, [-140.0], ["worst_sum_rate"], ["none", "realign"])
          if s.evaluation.clean_realign_control]
    assert [r["defense"] for r in on] == ["realign"]   # without R-MTLLMF: the realigning defense swept
    assert all(preset_scenario(name, zoo=zoo.name).evaluation.clean_realign_control for name in CONDITIONS)
    row, s = next(p for p in pts if p[0]["defense"] == "rmtllmf")
    s = s.replace(**{"evaluation.samples_per_task": 40, "defense.realign_steps": 2})
    calls = []
    real = defense.realign
    monkeypatch.setattr(defense, "realign", lambda *a, **k: calls.append(1) or real(*a, **k))
    cache = ResultCache(tmp_path / "c")
    r = pipeline.run(s, cache=cache)
    assert len(calls) == 1 and "clean_realigned" not in r.accuracy   # the defended encoder only
    assert work.run_points([(row, s)], cache=cache)[0]["avg_normalized"] == r.average_normalized["defended"]
    calls.clear()
    with_control = pipeline.run(s.replace(**{"evaluation.clean_realign_control": True}), cache=cache)
    assert len(calls) == 2 and "clean_realigned" in with_control.accuracy
    assert with_control.accuracy["defended"] == r.accuracy["defended"]  # the control changes nothing else


def light(zoo, **changes):
    """The micro zoo on the paper's worst-case channel with a fixed error model (the whole vector's
    scale, gain 0 dB: not the calibration, which may change), few samples, a short realignment."""
    return preset_scenario("paper_worst_sum_rate", tasks=zoo.task_names, zoo=zoo.name).replace(
        **{"evaluation.samples_per_task": 40, "defense.realign_steps": 2, "perturb.scale": "per_vector",
           "perturb.symbol_gain_db": 0.0, **changes})


def test_snr_rows_carry_the_rejection_rate_and_the_control(zoo, tmp_path):
    powers = [-150.0, -130.0, -110.0]
    pts = sweeps.snr_points(light(zoo), powers, ["none", "worst_sum_rate"], ["none", "rmtllmf"])
    ideal = {s.key for row, s in pts if row["attack"] == "none" and row["defense"] == "none"}
    assert len(ideal) == 1  # no jammer: every power is the same scenario, computed once
    rows = sweeps.snr_sweep(light(zoo), powers, ["none", "worst_sum_rate"], ["none", "rmtllmf"],
                            cache=ResultCache(tmp_path / "c"))
    assert [(r["attack"], r["defense"], r["jammer_power_dbm"]) for r in rows] == [
        (a, d, p) for a in ("none", "worst_sum_rate") for d in ("none", "rmtllmf") for p in powers]
    control = {r["avg_normalized_clean_realigned"] for r in rows if r["defense"] == "rmtllmf"}
    assert len(control) == 1 and 0.0 < control.pop() <= 1.0          # one line, on every R-MTLLMF row
    assert all(r["avg_normalized_clean_realigned"] is None for r in rows if r["defense"] == "none")
    for r in rows:
        assert 0.0 <= r["rejection_rate"] <= 1.0 and 0.0 <= r["rejection_rate_attacked"] <= 1.0
        if r["defense"] == "none":   # no defense: the defended model is the received one
            assert r["rejection_rate"] == r["rejection_rate_attacked"]
            assert r["avg_normalized"] == r["avg_normalized_attacked"]

    # the hypothesis test rejects H0 more often as the jammer raises the MSE
    jammed = sorted((r["mean_mse"], r["rejection_rate"]) for r in rows
                    if r["attack"] == "worst_sum_rate" and r["defense"] == "none")
    assert [m for m, _ in jammed] == sorted({m for m, _ in jammed})          # the MSE rises strictly...
    assert all(a < b for (_, a), (_, b) in zip(jammed, jammed[1:])), jammed  # ...and so does the rejection rate
    calm = next(r for r in rows if r["attack"] == "none" and r["defense"] == "none")
    assert calm["rejection_rate"] <= jammed[0][1]


def test_gain_points_use_the_paper_budgets_and_the_gain(zoo):
    from rmtllmf_core.science.wireless.presets import PAPER_JAMMER_DBM, PAPER_SU_JAMMER_DBM

    pts = sweeps.gain_points(light(zoo), [-10.0, 20.0], ["none", "worst_sum_rate", "worst_strongest_user"], ["none"])
    assert [(r["attack"], r["jammer_power_dbm"], r["symbol_gain_db"]) for r, _ in pts] == [
        ("none", None, -10.0), ("none", None, 20.0), ("worst_sum_rate", PAPER_JAMMER_DBM, -10.0),
        ("worst_sum_rate", PAPER_JAMMER_DBM, 20.0), ("worst_strongest_user", PAPER_SU_JAMMER_DBM, -10.0),
        ("worst_strongest_user", PAPER_SU_JAMMER_DBM, 20.0)]
    for row, s in pts:
        assert s.perturb.symbol_gain_db == row["symbol_gain_db"] and s.wireless.attack == row["attack"]
        if row["jammer_power_dbm"] is not None:
            assert s.wireless.jammer_power_w == pytest.approx(10 ** ((row["jammer_power_dbm"] - 30) / 10))
    one = sweeps.gain_points(light(zoo), [0.0], ["white"], ["none"], jammer_dbm=-120.0)
    assert one[0][0]["jammer_power_dbm"] == -120.0
    with pytest.raises(InputError):
        sweeps.gain_points(light(zoo), [0.0], ["white"], ["nope"])


def test_gain_sweep_a_larger_gain_is_a_smaller_error(zoo, tmp_path):
    rows = sweeps.gain_sweep(light(zoo), [-10.0, 10.0, 30.0], ["worst_sum_rate"], ["none"],
                             cache=ResultCache(tmp_path / "c"))
    assert [r["symbol_gain_db"] for r in rows] == [-10.0, 10.0, 30.0]
    assert len({r["mean_mse"] for r in rows}) == 1  # the channel does not change, the error it makes does
    rejection = [r["rejection_rate"] for r in rows]
    assert rejection == sorted(rejection, reverse=True) and rejection[0] > rejection[-1]
    assert all(r["avg_normalized_clean_realigned"] is None for r in rows)


def test_a_sample_of_combinations_is_seeded_shared_across_conditions_and_whole_when_small():
    users = [f"t{i}" for i in range(8)]
    a = sweeps.combinations_of(users, 3, per_size=4, seed=0)
    assert len(a) == 4 and a == sweeps.combinations_of(users, 3, per_size=4, seed=0) and len(set(a)) == 4
    assert a != sweeps.combinations_of(users, 3, per_size=4, seed=1)          # another seed, another sample
    assert len(sweeps.combinations_of(users, 8, per_size=4)) == 1               # C(8,8) = 1: whole
    assert len(sweeps.combinations_of(users, 2)) == 28                          # no sample: every one
    with pytest.raises(InputError, match="per_size"):
        sweeps.combinations_of(users, 3, per_size=0)
    base = preset_scenario("paper_ideal", tasks=tuple(["digits", "textures", "vehicles", "scenes"]))
    pts = sweeps.tasks_points(base, [("none", "none"), ("worst_sum_rate", "rmtllmf")], sizes=[2, 3], per_size=2)
    by_condition = {}
    for row, _ in pts:
        by_condition.setdefault((row["attack"], row["defense"]), []).append(row["tasks"])
    assert len(pts) == 2 * (2 + 2) and len({tuple(v) for v in by_condition.values()}) == 1
