"""run(scenario): validation, determinism, the cache, subsets and every attack, on the micro zoo."""
import threading

import numpy as np
import pytest
import torch

from rmtllmf_core.experiment import pipeline
from rmtllmf_core.cache import ResultCache
from rmtllmf_core.errors import InputError
from rmtllmf_core.experiment.presets import preset_scenario
from rmtllmf_core.science.wireless import ATTACKS


@pytest.fixture(scope="module")
def zoo(registered_micro_zoo):
    return registered_micro_zoo


@pytest.fixture
def cache(tmp_path):
    c = ResultCache(tmp_path / "cache")
    yield c
    c.close()


def scenario(zoo, name="paper_worst_sum_rate", **changes):
    base = preset_scenario(name, tasks=zoo.task_names, zoo=zoo.name)
    return base.replace(**{"evaluation.samples_per_task": 40, "defense.realign_steps": 5, **changes})


def strip(result):
    return result.model_dump(exclude={"timing_s", "key"})


def test_same_scenario_same_numbers(zoo, cache):
    s = scenario(zoo)
    a = pipeline.run(s, cache=cache, use_cache=False)
    b = pipeline.run(s, cache=cache, use_cache=False)
    assert strip(a) == strip(b)
    assert strip(pipeline.run(s.replace(seed=1), cache=cache, use_cache=False)) != strip(a)


def test_cache_hit_returns_the_stored_result(zoo, cache, monkeypatch):
    s = scenario(zoo)
    assert pipeline.cached(s, cache=cache) is None
    first = pipeline.run(s, cache=cache)

    def no_compute(*a, **k):
        raise AssertionError("a cache hit must not compute")

    monkeypatch.setattr(pipeline, "compute", no_compute)
    again = pipeline.run(s, cache=cache)
    assert again == first and pipeline.cached(s, cache=cache) == first


def test_negligible_noise_gives_the_clean_fusion(zoo, cache):
    s = scenario(zoo, "paper_ideal", **{"wireless.noise_power_w": 1e-40, "defense.freeze": False,
                                        "defense.realign": False})
    r = pipeline.run(s, cache=cache, use_cache=False)
    assert max(u["mse"] for u in r.wireless["users"]) < 1e-12
    assert r.accuracy["attacked"] == r.accuracy["clean"]
    assert r.wde["attacked"] == r.wde["clean"]
    assert r.rejection_rate["attacked"] == 0.0


@pytest.mark.parametrize("attack", ATTACKS)
def test_every_attack_runs_end_to_end(zoo, cache, attack):
    r = pipeline.run(scenario(zoo, **{"wireless.attack": attack, "wireless.target_user": 1,
                                      "wireless.jammer_power_w": 1e-13}), cache=cache)
    assert set(r.accuracy) >= {"finetuned", "zeroshot", "clean", "clean_realigned", "attacked", "defended"}
    assert all(0.0 <= a <= 1.0 for cond in r.accuracy.values() for a in cond.values())
    assert len(r.cosine["received"]) == 3


def test_stronger_jamming_raises_the_mse_and_the_rejection_rate(zoo, cache):
    # per-tensor scaling: with 'absolute' the weak end already saturates the micro zoo (both ~0.88 rejected)
    weak = pipeline.run(scenario(zoo, **{"wireless.jammer_power_w": 1e-18, "perturb.scale": "per_tensor"}), cache=cache)
    strong = pipeline.run(scenario(zoo, **{"wireless.jammer_power_w": 1e-10, "perturb.scale": "per_tensor"}), cache=cache)
    mse = lambda r: sum(u["mse"] for u in r.wireless["users"])
    assert mse(strong) > mse(weak)
    assert strong.rejection_rate["attacked"] > weak.rejection_rate["attacked"]


def test_fusing_a_subset_keeps_every_user_on_the_uplink(zoo, cache):
    full = pipeline.run(scenario(zoo), cache=cache)
    sub = pipeline.run(scenario(zoo, fuse=list(zoo.task_names[:2])), cache=cache)
    assert sub.tasks == list(zoo.task_names[:2])
    assert sub.wireless == full.wireless  # same drop, same per-user MSE
    assert len(sub.cosine["clean"]) == 2


def test_unknown_task_names_the_field(zoo, cache):
    with pytest.raises(InputError) as err:
        pipeline.run(scenario(zoo).replace(tasks=["nope", *zoo.task_names[1:]]), cache=cache)
    assert err.value.field == "tasks"


def test_corrupted_entry_is_recomputed(zoo, cache):
    s = scenario(zoo)
    first = pipeline.run(s, cache=cache)
    import sqlite3

    with sqlite3.connect(str(cache.directory / "cache.db")) as db:
        db.execute("UPDATE Cache SET value=? WHERE key=?", (sqlite3.Binary(b"junk"), first.key))
    assert strip(pipeline.run(s, cache=cache)) == strip(first)


# ---------------------------------------------------------------- what is memoised, and that it changes nothing

def fresh_engine(zoo):
    """A new engine for the zoo: empty in-process memos (as in a new process)."""
    return pipeline.register_zoo(zoo)


def count_calls(monkeypatch, module, name):
    calls = []
    real = getattr(module, name)

    def counted(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(module, name, counted)
    return calls


def test_memoised_results_equal_fresh_ones(zoo, cache):
    s = scenario(zoo)
    fresh_engine(zoo)
    warm = [pipeline.run(s.replace(seed=seed), cache=cache) for seed in (0, 1)]  # memos filled along the way
    for seed, got in zip((0, 1), warm):
        fresh_engine(zoo)                      # nothing in memory, nothing on disk
        assert strip(pipeline.run(s.replace(seed=seed), use_cache=False)) == strip(got)


def test_control_is_computed_once_across_seeds_and_channels(zoo, cache, monkeypatch):
    from rmtllmf_core.science import defense

    s = scenario(zoo)
    fresh_engine(zoo)
    first = pipeline.run(s, cache=cache)
    realigns = count_calls(monkeypatch, defense, "realign")
    moved = pipeline.run(s.replace(seed=5, **{"wireless.jammer_power_w": 3e-14}), cache=cache)
    assert len(realigns) == 1                 # the defended encoder only; the control is reused
    assert moved.accuracy["clean_realigned"] == first.accuracy["clean_realigned"]
    assert moved.accuracy["clean"] == first.accuracy["clean"]
    assert moved.wireless != first.wireless
    fresh_engine(zoo)                          # a new process: the control and clean logits come from disk
    realigns.clear()
    again = pipeline.run(s.replace(seed=6), cache=cache)
    assert len(realigns) == 1 and again.accuracy["clean_realigned"] == first.accuracy["clean_realigned"]


def test_control_recomputed_when_its_recipe_changes(zoo, cache, monkeypatch):
    from rmtllmf_core.science import defense

    s = scenario(zoo)
    pipeline.run(s, cache=cache)
    realigns = count_calls(monkeypatch, defense, "realign")
    pipeline.run(s.replace(**{"defense.realign_steps": 3}), cache=cache)
    assert len(realigns) == 2                 # defended and control: both with 3 steps


def test_none_and_rmtllmf_share_the_attacked_evaluation(zoo, cache, monkeypatch):
    from rmtllmf_core.science import evaluate
    from rmtllmf_core.studies import sweeps

    s = scenario(zoo, seed=11)
    fresh_engine(zoo)
    pipeline.run(sweeps.with_defense(s, "rmtllmf"), cache=cache)
    evaluations = count_calls(monkeypatch, evaluate.Evaluator, "logits")
    none = pipeline.run(sweeps.with_defense(s, "none"), cache=cache)
    assert evaluations == []                  # clean, attacked (= defended) all evaluated already
    assert none.accuracy["defended"] == none.accuracy["attacked"]
    assert none.cosine["defended"] == none.cosine["received"]


def test_corrupted_memo_entries_are_recomputed(zoo, cache):
    import sqlite3

    s = scenario(zoo, seed=3)
    fresh_engine(zoo)
    first = pipeline.run(s, cache=cache)
    with sqlite3.connect(str(cache.directory / "cache.db")) as db:
        keys = [k for (k,) in db.execute("SELECT key FROM Cache") if k.startswith("memo/")]
    assert len(keys) >= 2
    for i, k in enumerate(keys):             # unreadable bytes, or well-formed JSON of the wrong shape
        if i % 2:
            cache.set(k, {t: {"shape": [1, 1], "f32": "AAAAAA=="} for t in zoo.task_names})
        else:
            with sqlite3.connect(str(cache.directory / "cache.db")) as db:
                db.execute("UPDATE Cache SET value=? WHERE key=?", (sqlite3.Binary(b"junk"), k))
    fresh_engine(zoo)
    other = pipeline.run(s.replace(seed=4), cache=cache)
    for cond in ("finetuned", "zeroshot", "clean", "clean_realigned"):
        assert other.accuracy[cond] == first.accuracy[cond]


def test_subsets_and_defenses_share_one_noise_draw(zoo, cache):
    # Each user's error is drawn per (seed, user, tensor) (perturb.stream_seed), so the points of a task
    # sweep that differ in which users are fused or in the defense receive the very same vectors,
    # without keeping any [users, P] draw in memory.
    from rmtllmf_core.studies import sweeps

    s = scenario(zoo, seed=21)
    fresh_engine(zoo)
    full = pipeline.run(sweeps.with_defense(s, "none"), cache=cache)
    sub = pipeline.run(sweeps.with_defense(s, "rmtllmf").replace(fuse=list(zoo.task_names[:2])), cache=cache)
    assert np.allclose(sub.cosine["received"], [row[:2] for row in full.cosine["received"][:2]],
                       rtol=0, atol=1e-12)
    other = pipeline.run(s.replace(seed=22), cache=cache)
    assert not np.allclose(other.cosine["received"], full.cosine["received"], rtol=0, atol=1e-9)  # a new draw


def test_engine_holds_no_full_precision_copy_of_any_encoder(zoo):
    # issue 7: task vectors stay as stored and flat encoders are built per run; the engine keeps none
    engine = pipeline.get_engine(zoo.name)
    big = [k for k, v in vars(engine).items() if isinstance(v, torch.Tensor) and v.numel() >= engine.layout.numel]
    assert big == [] and not hasattr(engine, "vectors")
    assert torch.equal(engine.base_flat, engine.layout.flatten(zoo.base_state))


def test_device_choice_is_validated_and_the_cpu_keeps_its_cache_keys(zoo, monkeypatch):
    from rmtllmf_core.science import evaluate

    monkeypatch.delenv("RMTLLMF_DEVICE", raising=False)
    assert evaluate.compute_device() == torch.device("cpu")  # the default
    monkeypatch.setenv("RMTLLMF_DEVICE", "tpu")
    with pytest.raises(InputError, match="RMTLLMF_DEVICE.*cpu, cuda"):
        evaluate.compute_device()
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no GPU"):
            evaluate.compute_device("cuda")
        assert evaluate.compute_device("auto") == torch.device("cpu")
    # results computed on the CPU keep the keys they had before devices existed; another device's differ
    engine = pipeline.get_engine(zoo.name)
    if engine.device.type == "cpu":
        assert engine.fingerprint == zoo.fingerprint
    assert evaluate.device_tag(torch.device("cuda", 0)) == "cuda/amp_bf16"


def _forget(engine):
    """Drop the engine's in-memory memos: the next run computes every piece again."""
    engine._memo.clear()
    engine._logits.clear()


def test_side_branches_give_the_one_line_numbers(zoo, monkeypatch):
    """The fine-tuned/zero-shot predictions, the control and the attacked evaluation computed beside the
    main line give, bit for bit, what one line on one thread gives; and they did run beside it."""
    from rmtllmf_core.science import evaluate

    engine = pipeline.get_engine(zoo.name)
    assert evaluate._pools_class_token(engine.zoo.encoder)  # the micro zoo is a plain ViT: branches apply
    s = scenario(zoo, **{"evaluation.clean_realign_control": True})
    where = []
    real = pipeline._noise_free
    monkeypatch.setattr(pipeline, "_noise_free", lambda run_: (where.append(threading.current_thread().name),
                                                                real(run_))[1])
    _forget(engine)
    branched = pipeline.run(s, use_cache=False)
    assert where and where[0].startswith("rmtllmf-branch")
    monkeypatch.setattr(pipeline, "SIDE_BRANCHES", False)  # as in a sweep's workers: one line, one thread
    _forget(engine)
    assert strip(pipeline.run(s, use_cache=False)) == strip(branched)
    assert where[-1] == threading.current_thread().name
    threads = torch.get_num_threads()
    monkeypatch.setattr(pipeline, "SMALL_ENCODER_PARAMS", 0)  # no branches: one line
    torch.set_num_threads(1)
    try:
        _forget(engine)
        one_line = pipeline.run(s, use_cache=False)
    finally:
        torch.set_num_threads(threads)
    assert where[-1] == threading.current_thread().name
    assert strip(branched) == strip(one_line)
    assert branched.accuracy["clean_realigned"] is not None


def test_a_run_computes_on_one_thread_and_gives_the_count_back(zoo):
    engine = pipeline.get_engine(zoo.name)
    threads = torch.get_num_threads()
    seen = []
    torch.set_num_threads(2)
    try:
        _forget(engine)
        pipeline.run(scenario(zoo), use_cache=False, progress=lambda f, m: seen.append(torch.get_num_threads()))
        assert set(seen) == {1}
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


def test_a_side_branch_error_reaches_the_caller(zoo, monkeypatch):
    def broken(run_):
        raise InputError("tasks", "a side branch failed")

    monkeypatch.setattr(pipeline, "_noise_free", broken)
    with pytest.raises(InputError, match="side branch"):
        pipeline.run(scenario(zoo, seed=7), use_cache=False)
