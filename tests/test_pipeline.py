"""run(scenario): validation, determinism, the cache, subsets and every attack, on the micro zoo."""
import pytest

from rmtllmf_core import pipeline
from rmtllmf_core.cache import ResultCache
from rmtllmf_core.errors import InputError
from rmtllmf_core.presets import preset_scenario
from rmtllmf_core.wireless import ATTACKS


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
    return {k: v for k, v in result.items() if k not in ("timing_s", "key")}


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
    assert max(u["mse"] for u in r["wireless"]["users"]) < 1e-12
    assert r["accuracy"]["attacked"] == r["accuracy"]["clean"]
    assert r["wde"]["attacked"] == r["wde"]["clean"]
    assert r["rejection_rate"]["attacked"] == 0.0


@pytest.mark.parametrize("attack", ATTACKS)
def test_every_attack_runs_end_to_end(zoo, cache, attack):
    r = pipeline.run(scenario(zoo, **{"wireless.attack": attack, "wireless.target_user": 1,
                                      "wireless.jammer_power_w": 1e-13}), cache=cache)
    assert set(r["accuracy"]) >= {"finetuned", "zeroshot", "clean", "clean_realigned", "attacked", "defended"}
    assert all(0.0 <= a <= 1.0 for cond in r["accuracy"].values() for a in cond.values())
    assert len(r["cosine"]["received"]) == 3


def test_stronger_jamming_raises_the_mse_and_the_rejection_rate(zoo, cache):
    weak = pipeline.run(scenario(zoo, **{"wireless.jammer_power_w": 1e-18, "perturb.scale": "absolute"}), cache=cache)
    strong = pipeline.run(scenario(zoo, **{"wireless.jammer_power_w": 1e-10, "perturb.scale": "absolute"}), cache=cache)
    mse = lambda r: sum(u["mse"] for u in r["wireless"]["users"])
    assert mse(strong) > mse(weak)
    assert strong["rejection_rate"]["attacked"] >= weak["rejection_rate"]["attacked"]


def test_fusing_a_subset_keeps_every_user_on_the_uplink(zoo, cache):
    full = pipeline.run(scenario(zoo), cache=cache)
    sub = pipeline.run(scenario(zoo, fuse=list(zoo.task_names[:2])), cache=cache)
    assert sub["tasks"] == list(zoo.task_names[:2])
    assert sub["wireless"] == full["wireless"]  # same drop, same per-user MSE
    assert len(sub["cosine"]["clean"]) == 2


def test_unknown_task_names_the_field(zoo, cache):
    with pytest.raises(InputError) as err:
        pipeline.run(scenario(zoo).replace(tasks=["nope", *zoo.task_names[1:]]), cache=cache)
    assert err.value.field == "tasks"


def test_corrupted_entry_is_recomputed(zoo, cache):
    s = scenario(zoo)
    first = pipeline.run(s, cache=cache)
    import sqlite3

    with sqlite3.connect(str(cache.directory / "cache.db")) as db:
        db.execute("UPDATE Cache SET value=? WHERE key=?", (sqlite3.Binary(b"junk"), first["key"]))
    assert strip(pipeline.run(s, cache=cache)) == strip(first)
