"""The embedded zoo: generators, shipped files vs card, loader contract, errors, micro build."""
from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from rmtllmf_core.errors import AssetError, InputError
from rmtllmf_core.zoo import load_zoo
from rmtllmf_core.zoo import tasks as T
from rmtllmf_core.zoo.loader import verify_files
from rmtllmf_core.zoo.model import TINY_CONFIG, TINY_DIR, create, register_config

CARD = json.loads((TINY_DIR / "card.json").read_text())


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("RMTLLMF_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="module")
def zoo():
    return load_zoo("tiny")


# ---------------------------------------------------------------- generators

@pytest.mark.parametrize("task", T.TASK_NAMES)
def test_generator_is_deterministic_balanced_and_prefix_stable(task):
    C = len(T.TASKS[task].class_names)
    assert C >= 10
    a, ya = T.generate(task, 7, "pool", 3 * C)
    b, yb = T.generate(task, 7, "pool", 3 * C)
    assert a.dtype == np.uint8 and a.shape == (3 * C, 32, 32, 3)
    assert a.tobytes() == b.tobytes() and np.array_equal(ya, yb)
    assert np.bincount(ya, minlength=C).tolist() == [3] * C
    short, _ = T.generate(task, 7, "pool", C)
    assert short.tobytes() == a[:C].tobytes()  # a prefix of a longer split is the shorter split
    other, _ = T.generate(task, 8, "pool", C)
    assert other.tobytes() != short.tobytes()
    test, _ = T.generate(task, 7, "test", C)
    assert test.tobytes() != short.tobytes()  # splits are disjoint streams
    assert a.std() > 5  # not blank


def test_a_split_grows_by_its_missing_chunks_alone():
    full, labels = T.generate("vehicles", 3, "test", 150)
    tail, tail_labels = T.generate("vehicles", 3, "test", 150, start=T.CHUNK)
    assert tail.tobytes() == full[T.CHUNK:].tobytes() and np.array_equal(tail_labels, labels[T.CHUNK:])
    with pytest.raises(ValueError, match="multiple"):
        T.generate("vehicles", 3, "test", 150, start=10)


def test_procedural_data_generates_what_is_read_and_grows_to_the_same_bytes(monkeypatch, tmp_path):
    from rmtllmf_core.zoo import data as D

    monkeypatch.setenv("RMTLLMF_CACHE_DIR", str(tmp_path))
    calls = []
    real = T.generate
    monkeypatch.setattr(T, "generate", lambda *a, **k: calls.append((a[3], k.get("start", 0))) or real(*a, **k))
    data = D.ProceduralData(T.TASK_NAMES, 5, {"test": 40}, use_disk_cache=True)
    x50, _ = data("digits", "test", 50)
    assert calls == [(T.CHUNK, 0)]  # one chunk of the 400, not the split
    x300, y300 = data("digits", "test", 300)
    assert calls[1:] == [(k, k - T.CHUNK) for k in range(2 * T.CHUNK, 300, T.CHUNK)] + [(320, 256)]
    xall, yall = data("digits", "test")
    ref = torch.from_numpy(real("digits", 5, "test", 400)[0]).permute(0, 3, 1, 2).float().div_(255.0)
    ref = ((ref - D.MEAN) / D.STD).contiguous()
    assert torch.equal(xall, ref) and torch.equal(x300, ref[:300]) and torch.equal(x50, ref[:50])
    assert yall.tolist() == [i % 10 for i in range(400)] and torch.equal(y300, yall[:300])
    calls.clear()  # a new process reads the chunks from the disk cache
    again, _ = D.ProceduralData(T.TASK_NAMES, 5, {"test": 40}, use_disk_cache=True)("digits", "test")
    assert calls == [] and torch.equal(again, ref)


def test_tasks_are_different_domains():
    means = np.stack([T.generate(t, 0, "val", 100)[0].reshape(100, -1).mean(0) for t in T.TASK_NAMES])
    means = means - means.mean(0)
    assert len({tuple(T.TASKS[t].class_names) for t in T.TASK_NAMES}) == 8
    assert np.linalg.matrix_rank(means) == 7


# ---------------------------------------------------------------- shipped files

def test_shipped_files_match_the_card():
    verify_files(TINY_DIR, CARD)
    assert CARD["total_bytes"] <= 30_000_000
    assert all(f["bytes"] < 20_000_000 for f in CARD["files"].values())
    assert set(CARD["tasks"]) == set(T.TASK_NAMES)


def test_card_holds_the_promised_measurements():
    acc = CARD["accuracy"]
    assert set(acc["finetuned"]) == set(acc["zeroshot"]) == set(T.TASK_NAMES)
    assert len(acc["pairs"]) == 28
    cos = CARD["cosine"]["matrix"]
    assert len(cos) == 8 and all(abs(cos[i][i] - 1) < 1e-4 for i in range(8))
    assert 0 < acc["task_arithmetic"]["lambda"] <= 1
    for key in ("wall_time_s", "torch", "threads"):
        assert key in CARD["build"]
    assert CARD["model"]["parameters"]["visual"] > 0


# ---------------------------------------------------------------- loader contract

def test_loaded_zoo_follows_the_contract(zoo):
    assert zoo.task_names == T.TASK_NAMES
    assert isinstance(zoo.logit_scale, float) and zoo.logit_scale > 1
    keys = set(zoo.base_state)
    assert keys == {k for k, _ in zoo.encoder.named_parameters()}
    for t in zoo.task_names:
        assert set(zoo.task_vectors[t]) == keys
        assert all(v.dtype == torch.float32 for v in zoo.task_vectors[t].values())
        h = zoo.heads[t]
        assert h.shape == (len(zoo.tasks[t].class_names), zoo.model.text_projection.shape[1])
        assert torch.allclose(h.norm(dim=1), torch.ones(len(h)), atol=1e-5)
    for k, v in zoo.encoder.named_parameters():
        assert torch.equal(v, zoo.base_state[k])
    assert len(zoo.fingerprint) == 16


def test_split_returns_preprocessed_deterministic_prefixes(zoo):
    x, y = zoo.split("digits", "test", 20)
    assert x.dtype == torch.float32 and x.shape == (20, 3, 32, 32)
    assert y.dtype == torch.int64 and y.tolist() == [i % 10 for i in range(20)]
    x5, _ = zoo.split("digits", "test", 5)
    assert torch.equal(x5, x[:5])
    xa, ya = zoo.split("digits", "pool")
    assert len(xa) == CARD["data"]["split_per_class"]["pool"] * 10 >= 200


@pytest.mark.parametrize("args,field", [(("nope", "test", 5), "task"), (("digits", "nope", 5), "split"),
                                        (("digits", "test", -1), "n"), (("digits", "test", 10**6), "n")])
def test_split_rejects_bad_input(zoo, args, field):
    with pytest.raises(InputError) as e:
        zoo.split(*args)
    assert e.value.field == field


def test_accuracies_recomputed_on_a_subset_agree_with_the_card(zoo):
    from rmtllmf_core.zoo.evaluation import evaluate_zoo

    ref = CARD["accuracy"]["check_subset"]
    got = evaluate_zoo(zoo, ref["n_per_task"])
    tol = 1.5 / ref["n_per_task"]  # one sample either way (float summation order)
    for key in ("finetuned", "zeroshot", "task_arithmetic"):
        for t in T.TASK_NAMES:
            assert abs(got[key][t] - ref[key][t]) <= tol, (key, t)
    for k, v in zoo.encoder.named_parameters():  # evaluation restored the base weights
        assert torch.equal(v, zoo.base_state[k])


# ---------------------------------------------------------------- micro build, damaged assets

@pytest.fixture(scope="module")
def micro_zoo(tmp_path_factory):
    from rmtllmf_core.zoo.build import build

    out = tmp_path_factory.mktemp("micro") / "zoo"
    t0 = time.perf_counter()
    build(out, micro=True, progress=False, log=lambda *a: None)
    return out, time.perf_counter() - t0


def test_model_init_is_seeded_whatever_other_threads_load_and_leaves_the_callers_rng():
    """The app warms its zoo up on a background thread; open_clip draws a new model's init from torch's
    global RNG, so without a lock that load shifted a seeded init running beside it (flaky sweeps)."""
    name = register_config(TINY_CONFIG)
    want = create(name, seed=0).state_dict()
    stop = threading.Event()

    def keep_loading():
        while not stop.is_set():
            create(name)

    loader = threading.Thread(target=keep_loading, daemon=True)
    loader.start()
    try:
        for _ in range(4):
            got = create(name, seed=0).state_dict()
            assert all(torch.equal(got[k], want[k]) for k in want)
    finally:
        stop.set()
        loader.join()
    torch.manual_seed(5)
    a = torch.rand(4)
    torch.manual_seed(5)
    create(name)
    assert torch.equal(torch.rand(4), a)


def test_micro_build_end_to_end(micro_zoo):
    out, secs = micro_zoo
    assert secs < 60, f"micro build took {secs:.0f}s"
    z = load_zoo(out)
    assert z.name == "tiny-micro" and z.task_names == T.TASK_NAMES
    verify_files(out, z.card)
    x, y = z.split("vehicles", "val", 10)
    assert x.shape == (10, 3, 32, 32)


@pytest.mark.slow
def test_micro_rebuild_is_byte_identical(micro_zoo, tmp_path):
    # same recipe, same seed, same files, byte for byte (the asset headers hold one metadata key:
    # safetensors writes several in a random order)
    from rmtllmf_core.zoo.build import build

    card = build(tmp_path / "again", micro=True, progress=False, log=lambda *a: None)
    first = json.loads((micro_zoo[0] / "card.json").read_text())
    assert {k: v["sha256"] for k, v in card["files"].items()} == {k: v["sha256"] for k, v in first["files"].items()}


@pytest.mark.slow
def test_pretrain_cache_is_reused_until_the_generators_change(tmp_path, monkeypatch):
    # the pretext's concept pictures are drawn by the task generators: editing them must retrain the base
    from rmtllmf_core.zoo import build as B

    def pretrain_line(out):
        lines: list[str] = []
        B.build(tmp_path / out, micro=True, progress=False, log=lambda *a: lines.append(" ".join(map(str, a))),
                pretrain_cache=tmp_path / "pc")
        return next(s for s in lines if s.startswith("pretrain:"))

    assert "trained in this build" in pretrain_line("a")
    assert "cached (identical recipe" in pretrain_line("b")
    monkeypatch.setattr(B, "generator_digest", lambda: "edited-generators")
    assert "trained in this build" in pretrain_line("c")


@pytest.mark.slow
def test_recipe_steps_per_task(tmp_path):
    # a task's own iteration count (0 here: its fine-tuned encoder is the base, its vector zero)
    from rmtllmf_core.zoo.build import build

    card = build(tmp_path / "z", micro=True, progress=False, log=lambda *a: None,
                 overrides={"finetune": {"steps_per_task": {"digits": 0}}})
    assert card["task_vector_norms"]["digits"] == 0.0
    assert min(v for k, v in card["task_vector_norms"].items() if k != "digits") > 0
    assert card["recipe"]["finetune"]["steps_per_task"] == {"digits": 0}


def test_stem_learns_at_its_share_of_the_lr():
    # one AdamW step moves each weight by lr * (wd * w + g / (|g| + eps)) on identical gradients, so the
    # stem's step at scale s is s times its step at scale 1, and every other weight's step is the same
    from rmtllmf_core.zoo.train import STEM_PREFIXES, finetune

    visual = create(register_config(TINY_CONFIG), seed=0).visual
    start = {k: v.detach().clone() for k, v in visual.named_parameters()}
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8), np.arange(8) % 4
    head = torch.nn.functional.normalize(torch.randn(4, 128, generator=torch.Generator().manual_seed(0)), dim=-1)

    def step(scale):
        with torch.no_grad():
            for k, p in visual.named_parameters():
                p.copy_(start[k])
        finetune(visual, head, 30.0, x, y, steps=1, batch=8, lr=1e-3, wd=0.1, warmup=1, seed=0,
                 stem_lr_scale=scale, progress=False)
        return {k: v.detach() - start[k] for k, v in visual.named_parameters()}

    full, part, none = step(1.0), step(0.3), step(0.0)
    stem = [k for k in full if k.startswith(STEM_PREFIXES)]
    assert sorted(stem) == ["class_embedding", "conv1.weight", "ln_pre.bias", "ln_pre.weight", "positional_embedding"]
    for k in full:
        if k in stem:
            assert full[k].abs().max() > 0 and not none[k].any()
            torch.testing.assert_close(part[k], 0.3 * full[k], rtol=1e-3, atol=1e-7)
        else:
            assert torch.equal(part[k], full[k]) and torch.equal(none[k], full[k])


def test_drift_weight_keeps_the_anchor_features():
    # the penalty pulls the features of the anchor images back to the base's; weight 0 is the plain recipe
    from rmtllmf_core.zoo.model import to_input
    from rmtllmf_core.zoo.train import finetune, image_features

    visual = create(register_config(TINY_CONFIG), seed=0).visual
    start = {k: v.detach().clone() for k, v in visual.named_parameters()}
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (32, 32, 32, 3), dtype=np.uint8), np.arange(32) % 4
    anchor = rng.integers(0, 256, (48, 32, 32, 3), dtype=np.uint8)
    head = torch.nn.functional.normalize(torch.randn(4, 128, generator=torch.Generator().manual_seed(0)), dim=-1)
    feats = lambda: torch.nn.functional.normalize(image_features(visual, to_input(anchor)), dim=-1).detach()
    ref = feats()

    def tune(weight, with_anchor=True):
        with torch.no_grad():
            for k, p in visual.named_parameters():
                p.copy_(start[k])
        finetune(visual, head, 30.0, x, y, steps=8, batch=16, lr=3e-3, wd=0.1, warmup=1, seed=0,
                 anchor_images_u8=anchor if with_anchor else None, drift_weight=weight, progress=False)
        return {k: v.detach().clone() for k, v in visual.named_parameters()}, (feats() - ref).square().sum(-1).mean()

    plain, drift_plain = tune(0.0, with_anchor=False)
    zero, _ = tune(0.0)
    anchored, drift_anchored = tune(100.0)
    assert all(torch.equal(plain[k], zero[k]) for k in plain)
    assert drift_plain > 0.05 and drift_anchored < drift_plain / 3


def test_recipe_keys_and_device_are_checked(tmp_path):
    from rmtllmf_core.zoo.build import build

    with pytest.raises(InputError, match="recipe.fine_tune"):
        build(tmp_path / "x", micro=True, progress=False, log=lambda *a: None, overrides={"fine_tune": {}})
    with pytest.raises(InputError, match="steps_per_task.*unknown task.*'digit'"):
        build(tmp_path / "x", micro=True, progress=False, log=lambda *a: None,
              overrides={"finetune": {"steps_per_task": {"digit": 5}}})
    for bad in (2, -0.1, True, "0.3"):
        with pytest.raises(InputError, match=r"recipe\.finetune\.stem_lr_scale: a number in \[0, 1\]"):
            build(tmp_path / "x", micro=True, progress=False, log=lambda *a: None,
                  overrides={"finetune": {"stem_lr_scale": bad}})
    for bad in (-1, True, "1", float("nan"), float("inf")):
        with pytest.raises(InputError, match=r"recipe\.finetune\.drift_weight: a number >= 0"):
            build(tmp_path / "x", micro=True, progress=False, log=lambda *a: None,
                  overrides={"finetune": {"drift_weight": bad}})
    for bad in (0, 129, 2.5):
        with pytest.raises(InputError, match=r"recipe\.finetune\.drift_images: a whole number in \[1, 128\]"):
            build(tmp_path / "x", micro=True, progress=False, log=lambda *a: None,
                  overrides={"finetune": {"drift_images": bad}})
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="device"):
            build(tmp_path / "x", micro=True, progress=False, log=lambda *a: None, device="cuda")


def _copy(micro_zoo, tmp_path) -> Path:
    dst = tmp_path / "zoo"
    shutil.copytree(micro_zoo[0], dst)
    return dst


@pytest.mark.parametrize("victim", ["task_vectors.safetensors", "base.safetensors", "heads.safetensors",
                                    "rmtllmf-tiny.json", "card.json"])
def test_missing_file_names_the_file_and_the_rebuild(micro_zoo, tmp_path, victim):
    root = _copy(micro_zoo, tmp_path)
    (root / victim).unlink()
    with pytest.raises(AssetError) as e:
        load_zoo(root)
    assert victim in str(e.value) and "zoo build tiny" in str(e.value)


def test_truncated_and_corrupted_files_are_refused(micro_zoo, tmp_path):
    root = _copy(micro_zoo, tmp_path)
    p = root / "base.safetensors"
    p.write_bytes(p.read_bytes()[:1000])
    with pytest.raises(AssetError, match="base.safetensors.*truncated"):
        load_zoo(root)
    root2 = _copy(micro_zoo, tmp_path / "b")
    p = root2 / "heads.safetensors"
    raw = bytearray(p.read_bytes())
    raw[-3] ^= 0xFF
    p.write_bytes(bytes(raw))
    with pytest.raises(AssetError, match="heads.safetensors.*sha256"):
        load_zoo(root2)
    # even unverified, a truncated safetensors file is an AssetError, not a crash
    root3 = _copy(micro_zoo, tmp_path / "c")
    p = root3 / "task_vectors.safetensors"
    p.write_bytes(p.read_bytes()[:5000])
    with pytest.raises(AssetError, match="task_vectors.safetensors"):
        load_zoo(root3, verify=False)


def test_wrong_shape_is_refused_even_with_a_matching_hash(micro_zoo, tmp_path):
    from safetensors.torch import load_file, save_file

    from rmtllmf_core.zoo.types import sha256_file

    root = _copy(micro_zoo, tmp_path)
    p = root / "task_vectors.safetensors"
    tv = load_file(str(p))
    k = next(iter(tv))
    tv[k] = torch.zeros(tuple(tv[k].shape) + (2,), dtype=tv[k].dtype)
    save_file(tv, str(p))
    card = json.loads((root / "card.json").read_text())
    card["files"]["task_vectors.safetensors"] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
    (root / "card.json").write_text(json.dumps(card))
    with pytest.raises(AssetError, match="shape"):
        load_zoo(root)


def test_fingerprint_changes_with_any_shipped_byte(micro_zoo, tmp_path):
    from rmtllmf_core.zoo.types import sha256_file

    root = _copy(micro_zoo, tmp_path)
    f0 = load_zoo(root).fingerprint
    p = root / "samples" / "digits.png"
    p.write_bytes(p.read_bytes() + b"\0")
    card = json.loads((root / "card.json").read_text())
    card["files"]["samples/digits.png"] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
    (root / "card.json").write_text(json.dumps(card, indent=1))
    assert load_zoo(root).fingerprint != f0


# ---------------------------------------------------------------- open_clip path (real CLIP zoos)

def test_open_clip_name_with_local_checkpoints(tmp_path):
    from safetensors.torch import save_file

    from rmtllmf_core.zoo.model import TINY_CONFIG, create, register_config

    name = register_config(TINY_CONFIG)
    m = create(name, seed=3)
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(tmp_path / "base.safetensors"))
    ft = {k: v.clone() for k, v in m.state_dict().items()}
    ft["visual.proj"] += 0.01
    torch.save(ft, tmp_path / "ft.pt")
    z = load_zoo(name, pretrained=str(tmp_path / "base.safetensors"), finetuned={"digits": tmp_path / "ft.pt"},
                 tasks=("digits", "textures"))
    assert z.task_names == ("digits", "textures")
    assert z.task_vectors.stored("digits")["proj"].dtype == torch.float16  # as a built zoo stores them
    assert torch.allclose(z.task_vectors["digits"]["proj"].float(), torch.full_like(z.base_state["proj"], 0.01), atol=1e-5)
    assert float(z.task_vectors["digits"]["conv1.weight"].abs().max()) == 0.0
    assert torch.allclose(z.heads["textures"].norm(dim=1), torch.ones(10), atol=1e-5)
    x, _ = z.split("textures", "val", 4)
    assert x.shape == (4, 3, 32, 32)
    (tmp_path / "bad.safetensors").write_bytes(b"garbage")
    with pytest.raises(AssetError, match="bad.safetensors"):
        load_zoo(name, pretrained=str(tmp_path / "bad.safetensors"))


def test_head_overlap_against_closed_forms():
    from rmtllmf_core.zoo.types import head_overlap

    eye = torch.eye(10, 16)
    same = torch.ones(4, 16) * 3.0  # rows are normalised first
    # two classes at 60 degrees: cos = 0.5
    two = torch.tensor([[1.0, 0.0], [0.5, 3 ** 0.5 / 2]])
    got = head_overlap({"orthonormal": eye, "collinear": same, "sixty": two})
    assert got["orthonormal"] == pytest.approx(0.0, abs=1e-6)
    assert got["collinear"] == pytest.approx(1.0, abs=1e-6)
    assert got["sixty"] == pytest.approx(0.5, abs=1e-6)


def test_linear_probe_against_closed_forms():
    from rmtllmf_core.zoo.evaluation import linear_probe

    g = torch.Generator().manual_seed(0)
    y, yt = torch.arange(1000) % 10, torch.arange(2000) % 10
    # classes on the axes, a little noise: separable, whatever the scale of the features
    x, xt = torch.eye(10)[y] + 0.1 * torch.randn(1000, 10, generator=g), torch.eye(10)[yt] + 0.1 * torch.randn(2000, 10, generator=g)
    assert linear_probe((x, y), (xt, yt)) == 1.0
    assert linear_probe((1e4 * x, y), (1e4 * xt, yt)) == 1.0
    # features that say nothing of the label: chance (0.1, sd 0.007 on 2000 samples)
    noise = torch.randn(1000, 16, generator=g), torch.randn(2000, 16, generator=g)
    assert 0.07 < linear_probe((noise[0], y), (noise[1], yt)) < 0.13


def test_cli_info_probe_on_the_micro_zoo(micro_zoo, capsys):
    from rmtllmf_core.commands import main

    assert main(["zoo", "info", "--zoo", str(micro_zoo[0]), "--probe"]) == 0
    out = capsys.readouterr().out
    rows = [ln.split() for ln in out.splitlines() if ln.split() and ln.split()[0] in T.TASK_NAMES]
    assert len(rows) == len(T.TASK_NAMES) and all(0.0 <= float(r[-1]) <= 1.0 for r in rows)
    assert "base probe" in out


def test_cli_info_and_eval_subset(capsys):
    from rmtllmf_core.commands import main

    assert main(["zoo", "info"]) == 0
    out = capsys.readouterr().out
    assert "fingerprint" in out and "head cos" in out
    n = CARD["accuracy"]["check_subset"]["n_per_task"]
    assert main(["zoo", "eval", "--n", str(n), "--tolerance", str(1.5 / n)]) == 0
