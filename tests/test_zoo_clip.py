"""Real CLIP zoos offline: `zoo build clip` / `zoo import` with a shrunk ViT-B-32-shaped open_clip config
on tiny ImageFolder datasets that the tests write themselves (no network, no real weights or data)."""
import argparse
import json
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from rmtllmf_core.errors import AssetError, InputError
from rmtllmf_core.zoo import clip as C
from rmtllmf_core.zoo import datasets as D
from rmtllmf_core.zoo import importer as I

# ViT-B-32's architecture (open_clip VisionTransformer + text Transformer), shrunk: width 64, 2 layers, 32x32 images, patch 16
SHRUNK = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 16},
          "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
FAST = dict(steps=3, batch=8, warmup=1, lr=1e-3, eval_samples=0, workers=0, progress=False, pretrained=None,
            lambda_grid=[0.3, 1.0], split={"val_fraction": 0.6})  # val >= 50 per task: the engine's lambda search reads 50


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _write_folder(root, kind, classes=3, per_class=40, size=36, seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c in range(classes):
        d = root / f"class_{c}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            a = (rng.random((size, size, 3)) * 80).astype(np.uint8)
            if kind == "stripes":
                a[4 + 10 * c:12 + 10 * c] += 150
            else:
                a[..., c] += 150
            Image.fromarray(a).save(d / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("clipzoo")
    cfg = root / "vit-b-32-shrunk.json"
    cfg.write_text(json.dumps(SHRUNK))
    folders = {"stripes": str(_write_folder(root / "data" / "stripes", "stripes")),
               "colors": str(_write_folder(root / "data" / "colors", "colors", seed=1))}
    return {"root": root, "config": str(cfg), "folders": folders}


@pytest.fixture(scope="module")
def built(env):
    out = env["root"] / "zoo"
    card = C.build_clip(out, model="x", model_config=env["config"], datasets=[], folders=env["folders"], log=lambda *a: None, **FAST)
    return out, card


def _load(path):
    from rmtllmf_core.zoo.loader import load_zoo

    return load_zoo(path)  # the one loader, as the app and the engine call it


# ------------------------------------------------------------------ datasets

def test_splits_are_disjoint_balanced_and_deterministic(env):
    src = D.open_task("stripes", None, folder=env["folders"]["stripes"], split_cfg={"pool_per_class": 2, "val_fraction": 0.2})
    sp = src.splits()
    (_, tr), (_, va), (_, te), (_, po) = sp["train"], sp["val"], sp["test"], sp["pool"]
    assert not set(tr) & set(va) and not set(tr) & set(te) and not set(va) & set(te)  # single split: test carved out
    assert set(po) <= set(tr) and len(po) == 2 * 3
    assert len(tr) + len(va) + len(te) == 120
    assert sorted(src.train_labels[te[:3]]) == [0, 1, 2]  # class-interleaved: the first n are balanced
    again = D.open_task("stripes", None, folder=env["folders"]["stripes"], split_cfg={"pool_per_class": 2, "val_fraction": 0.2})
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(sp.values(), again.splits().values()))
    assert src.class_names == ("class 0", "class 1", "class 2")


def test_missing_dataset_says_where_and_how(tmp_path):
    with pytest.raises(AssetError) as e:
        D.open_task("mnist", tmp_path)
    msg = str(e.value)
    assert str(tmp_path / "MNIST" / "raw") in msg and "--download" in msg
    with pytest.raises(AssetError) as e:
        D.open_task("resisc45", tmp_path)
    assert str(tmp_path / "resisc45") in str(e.value) and "NWPU-RESISC45" in str(e.value)
    with pytest.raises(AssetError, match="cannot download"):
        D.open_task("cars", tmp_path, download=True)
    with pytest.raises(AssetError, match="ImageFolder"):
        D.open_task("mine", tmp_path, folder=tmp_path / "nowhere")
    with pytest.raises(InputError, match="unknown dataset"):
        D.open_task("imagenet", tmp_path)
    # the build fails on the missing dataset before it loads or trains anything
    with pytest.raises(AssetError, match="svhn"):
        C.build_clip(tmp_path / "zoo", model="ViT-B-32", data_root=tmp_path, datasets=["svhn"], **FAST)
    assert not (tmp_path / "zoo").exists()  # and leaves no empty work folder behind


def test_missing_data_root_and_a_failed_download_say_what_to_do(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    with pytest.raises(InputError) as e:
        C.build_clip(tmp_path / "zoo", model="ViT-B-32", data_root=None, datasets=["mnist"], **FAST)
    assert "--data-root DIR" in str(e.value) and "MNIST/raw" in str(e.value) and "--folder NAME=PATH" in str(e.value)

    class Offline:  # torchvision's MNIST on a machine without network (no download is tried here)
        def __init__(self, root, train=True, download=False):
            raise (RuntimeError("urlopen error [Errno -2] Name or service not known") if download
                   else RuntimeError("Dataset not found. You can use download=True to download it"))

    monkeypatch.setattr(tvd, "MNIST", Offline)
    with pytest.raises(AssetError) as e:
        D.open_task("mnist", tmp_path)
    assert "pass --download" in str(e.value) and str(tmp_path / "MNIST" / "raw") in str(e.value)
    with pytest.raises(AssetError) as e:
        D.open_task("mnist", tmp_path, download=True)
    msg = str(e.value)
    assert "download failed" in msg and "urlopen" in msg and "pass --download" not in msg
    assert str(tmp_path / "MNIST" / "raw") in msg


def _write_mnist(root, n_train=40, n_test=20):
    """torchvision's MNIST layout (uncompressed idx files under root/MNIST/raw), tiny."""
    import struct

    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        images = (rng.random((n, 28, 28)) * 255).astype(np.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, n) + labels.tobytes())


def test_torchvision_layouts_offline(tmp_path):
    from PIL import Image

    _write_mnist(tmp_path)
    src = D.open_task("mnist", tmp_path, split_cfg={"pool_per_class": 1})
    assert src.class_names == tuple("0123456789") and src.test is not None
    assert src.split_sizes()["test"] == 20 and src.split_sizes()["pool"] == 10
    ds = D.PreprocessedSplit(src, "test", 32)
    x, y = ds[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.uint8 and y == int(src.test_labels[src.splits()["test"][1][0]])
    # EuroSAT: one split in torchvision's folder layout; test carved out, class names in words
    for c in D.EUROSAT_NAMES:
        d = tmp_path / "eurosat" / "2750" / c
        d.mkdir(parents=True)
        for i in range(5):
            Image.fromarray(np.full((64, 64, 3), 10 * i, np.uint8)).save(d / f"{c}_{i}.jpg")
    eu = D.open_task("eurosat", tmp_path)
    assert eu.test is None and eu.class_names[0] == "annual crop land" and "sea or lake" in eu.class_names
    sizes = eu.split_sizes()
    assert sizes["test"] == 10 and sizes["train"] + sizes["val"] == 40


def test_eight_paper_datasets_are_known():
    assert set(D.PAPER_TASKS) == {"cars", "dtd", "eurosat", "gtsrb", "mnist", "resisc45", "sun397", "svhn"}
    assert len(D.GTSRB_CLASSES) == 43 and len(D.EUROSAT_NAMES) == 10
    for spec in D.DATASETS.values():
        assert all("{}" in t for t in spec.templates) and spec.where.startswith("DATA_ROOT/")


# ------------------------------------------------------------------ build

def test_build_writes_the_zoo_layout_and_card(built, env):
    out, card = built
    assert card["format"] == "rmtllmf-zoo/1" and card["data"]["kind"] == "datasets"
    assert set(card["files"]) == {"vit-b-32-shrunk.json", "base.safetensors", "task_vectors.safetensors", "heads.safetensors",
                                  "samples/stripes.png", "samples/colors.png"}
    from rmtllmf_core.zoo.loader import verify_files

    verify_files(out, card)  # hashes and sizes match
    from safetensors import safe_open

    with safe_open(str(out / "task_vectors.safetensors"), "pt") as f:
        keys = list(f.keys())
        assert {k.split("/")[0] for k in keys} == {"stripes", "colors"}
        assert all(f.get_tensor(k).dtype == torch.float16 for k in keys[:5])
    acc = card["accuracy"]
    assert set(acc["finetuned"]) == {"stripes", "colors"} and 0 <= acc["task_arithmetic"]["normalized_avg"]
    assert acc["task_arithmetic"]["lambda"] in card["recipe"]["lambda_grid"]
    assert set(acc["pairs"]) == {"stripes+colors"}
    assert card["recipe"]["finetune"]["steps"] == 3 and card["model"]["open_clip_name"] == "vit-b-32-shrunk"


def test_load_zoo_loads_a_built_zoo(built):
    out, card = built
    zoo = _load(out)
    assert zoo.task_names == ("stripes", "colors")
    assert zoo.heads["colors"].shape == (3, 32)
    tv = zoo.task_vectors["stripes"]
    assert set(tv) == set(zoo.base_state) and any(v.abs().sum() > 0 for v in tv.values())
    x, y = zoo.split("colors", "test", 3)
    assert x.shape == (3, 3, 32, 32) and x.dtype == torch.float32 and sorted(y.tolist()) == [0, 1, 2]
    px, py = zoo.split("colors", "pool", None)
    assert len(py) == card["data"]["datasets"]["colors"]["sizes"]["pool"]
    with pytest.raises(InputError):
        zoo.split("colors", "test", 10_000)
    # the shared `zoo eval` code recomputes the card's check subset from the loaded files
    from rmtllmf_core.zoo.evaluation import evaluate_zoo

    sub = card["accuracy"]["check_subset"]
    r = evaluate_zoo(zoo, sub["n_per_task"])
    for key in ("finetuned", "zeroshot", "task_arithmetic"):
        for t, v in sub[key].items():
            assert abs(r[key][t] - v) < 1e-6, (key, t)


def _mapped_files() -> str:
    return Path("/proc/self/maps").read_text() if Path("/proc/self/maps").exists() else ""


@pytest.mark.parametrize("mmap", [True, False])
def test_task_vectors_stay_fp16_and_come_out_fp32_one_at_a_time(built, tmp_path, mmap):
    import gc
    import os
    import shutil

    from rmtllmf_core.science.taskvec import ParamLayout, stack
    from rmtllmf_core.zoo.loader import load_zoo
    from rmtllmf_core.zoo.types import TaskVectors

    out, _ = built
    zdir = tmp_path / "zoo"  # a path of its own: no other test's zoo maps these files
    shutil.copytree(out, zdir, ignore=shutil.ignore_patterns(".build"))
    tv_file = str((zdir / "task_vectors.safetensors").resolve())
    zoo = load_zoo(zdir, mmap=mmap)
    tvs = zoo.task_vectors
    assert isinstance(tvs, TaskVectors) and set(tvs) == {"stripes", "colors"}
    names = list(zoo.base_state)
    for t in tvs:
        stored = tvs.stored(t)
        assert all(v.dtype == torch.float16 for v in stored.values())  # as on disk: no fp32 copy held
        assert list(tvs[t]) == names and tvs[t]["proj"].dtype == torch.float32
        assert torch.equal(tvs[t]["proj"], stored["proj"].float())
    assert tvs.stored_bytes() == sum(v.numel() for v in zoo.base_state.values()) * 2 * 2
    # streaming accessors agree with the plain-mapping path the engine uses today
    layout = ParamLayout.from_state(zoo.base_state)
    full = stack(layout, tvs, zoo.task_names)
    buf = torch.empty(layout.numel)
    for i, t in enumerate(zoo.task_names):
        assert torch.equal(tvs.flatten_into(t, buf), full[i])
    assert torch.equal(tvs.stacked("conv1.weight").flatten(1), full[:, layout.slice("conv1.weight")])
    got = [(t, v["proj"]) for t, v in tvs.iter_fp32()]
    assert [t for t, _ in got] == list(zoo.task_names) and all(v.dtype == torch.float32 for _, v in got)
    with pytest.raises(ValueError):
        tvs.flatten_into("colors", torch.empty(3))
    # the base encoder's parameters never share memory with the model (zoo eval overwrites the model's)
    params = {p.untyped_storage().data_ptr() for p in zoo.model.visual.parameters()}
    assert not params & {v.untyped_storage().data_ptr() for v in zoo.base_state.values()}
    assert (tv_file in _mapped_files()) == mmap  # big zoos stay memory-mapped; small ones are read in
    before = {t: tvs[t]["proj"].clone() for t in tvs}
    # a mapped file replaced atomically (as the builders write) leaves the loaded zoo as it was
    tmp = zdir / "tv.tmp"
    shutil.copyfile(zdir / "task_vectors.safetensors", tmp)
    os.replace(tmp, zdir / "task_vectors.safetensors")
    assert all(torch.equal(tvs[t]["proj"], before[t]) for t in tvs)
    del zoo, tvs, stored
    gc.collect()


def test_a_plain_task_vector_mapping_is_wrapped(registered_micro_zoo):
    from rmtllmf_core.zoo.types import TaskVectors

    zoo = registered_micro_zoo
    tvs = zoo.task_vectors
    assert isinstance(tvs, TaskVectors)
    t = zoo.task_names[0]
    assert list(tvs[t]) == list(zoo.base_state) and all(v.dtype == torch.float32 for v in tvs[t].values())
    assert tvs[t].materialize().keys() == zoo.base_state.keys()


def test_pipeline_runs_on_a_real_layout_zoo_selected_by_path(built, tmp_path):
    from rmtllmf_core.experiment import pipeline
    from rmtllmf_core.cache import ResultCache
    from rmtllmf_core.experiment.presets import preset_scenario

    out, _ = built
    _load(out)
    s = preset_scenario("paper_worst_sum_rate", tasks=("stripes", "colors"), zoo=str(out))
    s = s.replace(**{"evaluation.samples_per_task": 10, "defense.realign_steps": 2, "defense.shots_per_class": 1})
    cache = ResultCache(tmp_path / "cache")
    try:
        r = pipeline.run(s, cache=cache, use_cache=False)
    finally:
        cache.close()
    assert r.zoo.name == "zoo" and set(r.accuracy["clean"]) >= {"stripes", "colors"}


def test_resume_after_a_kill_skips_finished_tasks(env, tmp_path, monkeypatch):
    out = tmp_path / "zoo"
    opts = dict(model="x", model_config=env["config"], datasets=[], folders=env["folders"], log=lambda *a: None, **FAST)

    def killed(task):
        raise KeyboardInterrupt(f"killed after {task}")

    with pytest.raises(KeyboardInterrupt):
        C.build_clip(out, after_task=killed, **opts)
    prog = json.loads((out / ".build" / "progress.json").read_text())
    assert list(prog["done"]) == ["stripes"] and not (out / "card.json").exists()
    first = (out / ".build" / "tv-stripes.safetensors").read_bytes()
    base = (out / "base.safetensors").read_bytes()
    trained = []
    real = C.finetune
    monkeypatch.setattr(C, "finetune", lambda *a, **k: trained.append(k["desc"]) or real(*a, **k))
    card = C.build_clip(out, keep_work=True, **opts)
    assert trained == ["colors"]  # stripes was not trained again
    assert (out / ".build" / "tv-stripes.safetensors").read_bytes() == first
    assert (out / "base.safetensors").read_bytes() == base  # the resumed build used the same base
    assert set(card["accuracy"]["finetuned"]) == {"stripes", "colors"}
    # other options on an unfinished/finished build dir are refused, --restart starts over
    with pytest.raises(InputError, match="other options"):
        C.build_clip(out, **{**opts, "steps": 4})


@pytest.fixture(scope="module")
def no_pairs(env):
    """A zoo built with `--no-pairs` whose card's accuracies are on the first 6 test images per task."""
    out = env["root"] / "zoo-no-pairs"
    card = C.build_clip(out, model="x", model_config=env["config"], datasets=[], folders=env["folders"],
                        log=lambda *a: None, **{**FAST, "eval_samples": 6, "pairs": False})
    return out, card


def test_zoo_info_prints_a_card_built_without_pairs(no_pairs, capsys):
    from rmtllmf_core.commands import main

    out, card = no_pairs
    assert card["accuracy"]["pairs"] == {} and card["accuracy"]["pairs_normalized_avg"] is None
    assert main(["zoo", "info", "--zoo", str(out)]) == 0
    text = capsys.readouterr().out
    assert "pairs: not evaluated" in text and "task arithmetic: lambda" in text and "cosine max" in text
    assert "first 6 test samples per task" in text


def test_zoo_eval_compares_on_the_samples_the_card_was_computed_on(no_pairs, capsys, monkeypatch):
    from rmtllmf_core.commands import main
    from rmtllmf_core.zoo import evaluation

    out, card = no_pairs
    sizes = {t: card["data"]["datasets"][t]["sizes"]["test"] for t in card["tasks"]}
    assert all(v > 6 for v in sizes.values())  # so the whole split would be another sample
    seen = []
    real = evaluation.evaluate_zoo
    monkeypatch.setattr(evaluation, "evaluate_zoo", lambda zoo, n, **kw: seen.append(n) or real(zoo, n, **kw))
    assert main(["zoo", "eval", "--zoo", str(out), "--tolerance", "1e-6"]) == 0
    text = capsys.readouterr().out
    assert seen == [{"stripes": 6, "colors": 6}]
    assert "first 6 test samples per task, as the card's accuracies" in text and "over 6 figures" in text
    # --pairs on a card without pairs says so instead of failing; an n the card has no figures for compares nothing
    assert main(["zoo", "eval", "--zoo", str(out), "--pairs", "--tolerance", "1e-6"]) == 0
    assert "no pairwise figures" in capsys.readouterr().out
    assert main(["zoo", "eval", "--zoo", str(out), "--n", "5"]) == 1
    assert "nothing to compare" in capsys.readouterr().out


# ------------------------------------------------------------------ import

def _shrunk_model(env):
    m, name, _, _ = C.load_base("x", None, env["config"], log=lambda *a: None)
    return m


def test_import_of_a_state_dict_checkpoint(env, tmp_path):
    base = _shrunk_model(env)
    base_file = tmp_path / "base.pt"
    torch.save(base.state_dict(), base_file)
    delta = {}
    ckpts = {}
    for i, t in enumerate(("stripes", "colors")):
        g = torch.Generator().manual_seed(i)
        ft = {k: v.clone() for k, v in base.state_dict().items()}
        for k in [k for k in ft if k.startswith("visual.")]:
            d = 1e-2 * torch.randn(ft[k].shape, generator=g)
            ft[k] += d
            delta[(t, k[len("visual."):])] = d
        path = tmp_path / f"{t}.pt"
        if i == 0:
            torch.save({"state_dict": {"module." + k: v for k, v in ft.items()}}, path)  # whole CLIP, DDP-style
        else:
            path = path.with_suffix(".safetensors")
            from safetensors.torch import save_file

            save_file({"model.visual." + k[len("visual."):]: v.contiguous() for k, v in ft.items() if k.startswith("visual.")}, str(path))
        ckpts[t] = path
    out = tmp_path / "imported"
    card = I.import_zoo(out, ckpts, model="x", model_config=env["config"], pretrained=str(base_file), datasets=[],
                        folders=env["folders"], eval_samples=0, workers=0, progress=False, log=lambda *a: None)
    assert card["recipe"]["imported_tasks"] == ["colors", "stripes"]
    assert card["rebuild_command"].startswith("python -m rmtllmf_core zoo import") and "--finetuned stripes=" in card["rebuild_command"]
    assert not list((out / ".import").glob("*.safetensors")) and not list((out / ".build").glob("tv-*"))  # scratch removed
    from safetensors.torch import load_file

    tv = load_file(str(out / "task_vectors.safetensors"))
    for (t, k), d in list(delta.items())[::7]:
        assert torch.allclose(tv[f"{t}/{k}"].float(), d, atol=2e-3), (t, k)
    zoo = _load(out)
    assert zoo.task_names == ("stripes", "colors")


def test_checkpoint_of_another_shape_is_refused(env, tmp_path):
    path = tmp_path / "bad.pt"
    torch.save({"visual.conv1.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(AssetError, match="missing|shape"):
        I.import_zoo(tmp_path / "z", {"stripes": path}, model="x", model_config=env["config"], pretrained=None,
                     datasets=[], folders=env["folders"], progress=False, log=lambda *a: None)


def test_missing_checkpoint_is_named_before_anything_is_written(env, tmp_path):
    with pytest.raises(AssetError, match="nowhere.pt.*no such checkpoint"):
        I.import_zoo(tmp_path / "z", {"stripes": tmp_path / "nowhere.pt"}, model="x", model_config=env["config"],
                     pretrained=None, datasets=[], folders=env["folders"], progress=False, log=lambda *a: None)
    assert not (tmp_path / "z").exists()


def test_pickled_checkpoint_refused_without_flag_and_converted_once_with_it(env, tmp_path, monkeypatch):
    vis = {k: v.clone() for k, v in _shrunk_model(env).visual.state_dict().items()}
    path = tmp_path / "paper_style.pkl"
    with open(path, "wb") as f:
        pickle.dump(vis, f)  # a plain pickle: weights-only loading must refuse it
    with pytest.raises(AssetError, match="--trust-pickle") as e:
        I.read_checkpoint(path, convert_dir=tmp_path / "converted")
    assert "PyTorch 2.6" not in str(e.value) and len(str(e.value)) < 600  # our one-line reason, not torch's page
    assert not (tmp_path / "converted").exists()
    state, src = I.read_checkpoint(path, trust_pickle=True, convert_dir=tmp_path / "converted", log=lambda *a: None)
    assert src.suffix == ".safetensors" and src.parent == tmp_path / "converted"
    assert all(torch.equal(state[k], vis[k]) for k in vis)
    # never unpickled again: the conversion is found by the pickle's hash
    monkeypatch.setattr(I, "_unpickle_trusted", lambda p: pytest.fail("unpickled twice"))
    state2, src2 = I.read_checkpoint(path, trust_pickle=True, convert_dir=tmp_path / "converted", log=lambda *a: None)
    assert src2 == src and all(torch.equal(state2[k], vis[k]) for k in vis)


def test_trusted_pickle_of_a_whole_module_from_code_we_do_not_have(env, tmp_path):
    """Like the task-arithmetic checkpoints: torch.save of an `src.modeling.ImageEncoder` wrapping the CLIP model."""
    fake = types.ModuleType("src_modeling_absent")

    class ImageEncoder(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

    ImageEncoder.__module__ = fake.__name__
    ImageEncoder.__qualname__ = "ImageEncoder"
    fake.ImageEncoder = ImageEncoder
    sys.modules[fake.__name__] = fake
    model = _shrunk_model(env)
    path = tmp_path / "mnist.pt"
    try:
        torch.save(ImageEncoder(model), path)
    finally:
        del sys.modules[fake.__name__]
    with pytest.raises(AssetError, match="trust-pickle") as e:
        I.read_checkpoint(path, convert_dir=tmp_path / "c")
    assert "src_modeling_absent.ImageEncoder" in str(e.value)  # says what unpickling would have imported
    state, src = I.read_checkpoint(path, trust_pickle=True, convert_dir=tmp_path / "c", log=lambda *a: None)
    vis = I.visual_state(state, {k: v.shape for k, v in model.visual.named_parameters()}, str(path))
    assert all(torch.equal(vis[k], v) for k, v in model.visual.named_parameters())


# ------------------------------------------------------------------ command line

def _parser():
    from rmtllmf_core.commands.zoo_clip import add_clip_commands

    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="zoo_command")
    b = sub.add_parser("build")
    b.add_argument("which", choices=["tiny", "clip"])
    b.add_argument("--out", default=None)
    b.add_argument("--quiet", action="store_true")
    add_clip_commands(sub, b)
    return p


def test_cli_build_clip_and_import_options(env, tmp_path):
    from rmtllmf_core.commands.zoo_clip import run_build_clip

    p = _parser()
    a = p.parse_args(["build", "clip", "--model", "x", "--model-config", env["config"], "--pretrained", "none",
                      "--datasets", "none", "--folder", f"stripes={env['folders']['stripes']}", "--folder",
                      f"colors={env['folders']['colors']}", "--steps", "2", "--batch", "8", "--warmup", "1",
                      "--eval-samples", "4", "--no-pairs", "--workers", "0", "--out", str(tmp_path / "z"), "--quiet"])
    assert a.device == "cpu" and a.lr is None
    assert run_build_clip(a) == 0
    card = json.loads((tmp_path / "z" / "card.json").read_text())
    assert card["accuracy"]["pairs"] == {} and card["accuracy"]["n_eval"]["colors"]["test"] == 4
    assert "zoo build clip" in card["rebuild_command"] and "--folder stripes=" in card["rebuild_command"]
    help_text = p._subparsers._group_actions[0].choices["import"].format_help()
    assert "--trust-pickle" in help_text and "arbitrary" in help_text
    flat = " ".join(help_text.split())
    assert "never unpickled again" in flat and "refused, unread" in flat and "need --trust-pickle" in flat
    assert "fine-tuned from" in flat and "DIR/MNIST/raw/" in flat
    with pytest.raises(SystemExit):
        p.parse_args(["import", "--out", "x"])  # --finetuned is required


def test_loader_workers_default_to_the_available_cores(monkeypatch):
    from rmtllmf_core.serve import jobs
    from rmtllmf_core.commands import zoo_clip as clip_cli

    args = _parser().parse_args(["build", "clip", "--pretrained", "none", "--datasets", "mnist", "--quiet"])
    assert args.workers is None  # decided at run time, from this machine's cores
    assert 1 <= clip_cli._common(args)["workers"] <= min(4, jobs.available_cores())
    for cores, workers in [(1, 1), (2, 2), (64, 4)]:  # a 2-core machine starts 2, not 4 (torch warned)
        monkeypatch.setattr(jobs, "available_cores", lambda cores=cores: cores)
        assert clip_cli.default_workers() == workers
        assert clip_cli._common(args)["workers"] == workers
    assert clip_cli._common(_parser().parse_args(["build", "clip", "--workers", "0"]))["workers"] == 0
    with pytest.raises(InputError) as err:
        clip_cli._common(_parser().parse_args(["build", "clip", "--workers", "-1"]))
    assert err.value.field == "workers"


# ------------------------------------------------------------------ a user's own small tasks, with the defaults

@pytest.fixture(scope="module")
def small_zoo(env):
    """Two folder tasks of 3 x 40 images with the default splits: 24 test and 10 validation images a task,
    10 pool images a class (what a researcher's own tasks often hold)."""
    out = env["root"] / "small-zoo"
    fast = {k: v for k, v in FAST.items() if k != "split"}
    C.build_clip(out, model="x", model_config=env["config"], datasets=[], folders=env["folders"],
                 log=lambda *a: None, **fast)
    return out


def _cli(argv, capsys):
    from rmtllmf_core.commands import main

    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_run_sweep_and_arena_take_a_small_folder_zoo_with_the_defaults(small_zoo, tmp_path, monkeypatch, capsys):
    from rmtllmf_core.zoo.loader import load_zoo

    monkeypatch.setenv("RMTLLMF_CACHE_DIR", str(tmp_path / "cache"))
    zoo = load_zoo(small_zoo)
    test_n = {t: zoo.split_size(t, "test") for t in zoo.task_names}
    val_n = {t: zoo.split_size(t, "val") for t in zoo.task_names}
    assert max(test_n.values()) < 200 and max(val_n.values()) < 50   # the defaults do not fit as they are
    common = ["--set", "defense.realign_steps=2"]  # the micro model: cheap; every other field its default
    code, out, err = _cli(["run", "--zoo", str(small_zoo), "--preset", "paper_worst_sum_rate", "--json", *common], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["scenario"]["evaluation"]["samples_per_task"] == min(test_n.values())
    said = " ".join(result["warnings"])
    assert "evaluation.samples_per_task" in said and f"lambda chosen on {min(val_n.values())} validation" in said
    # a value the user did set and that does not fit stays an error naming the field and the bound
    code, out, err = _cli(["run", "--zoo", str(small_zoo), "--preset", "paper_worst_sum_rate",
                           "--set", "evaluation.samples_per_task=200", *common], capsys)
    assert code == 2 and err.startswith("error: evaluation.samples_per_task") and f"at most {min(test_n.values())}" in err
    code, out, err = _cli(["sweep", "--kind", "snr", "--zoo", str(small_zoo), "--preset", "paper_worst_sum_rate",
                           "--jammer-dbm=-120", "--attacks", "worst_sum_rate", "--defenses", "rmtllmf", "--workers", "1",
                           "--out", str(tmp_path / "sweep"), *common], capsys)
    assert code == 0, err
    assert err.startswith("note: evaluation.samples_per_task")  # said on a line of its own, before the bar
    assert (tmp_path / "sweep" / "snr.csv").exists()
    code, out, err = _cli(["arena", "--zoo", str(small_zoo), "--seeds", "0", "--defenses", "rmtllmf",
                           "--attacks", "worst_sum_rate", "--workers", "1", "--out", str(tmp_path / "arena")], capsys)
    assert code == 0, err
    assert (tmp_path / "arena" / "arena.csv").exists()


@pytest.mark.parametrize("argv, field", [
    (["run", "--set", "evaluation.samples_per_task=100"], "evaluation.samples_per_task"),
    (["run", "--set", "defense.shots_per_class=15"], "defense.shots_per_class"),   # the pool holds 10 a class
    (["run", "--set", "tasks=stripes,nope"], "tasks"),
    (["run", "--set", "fusion.lambda_mode=fixed", "--set", "fusion.lambda=9"], "fusion.lambda"),
    (["sweep", "--kind", "snr", "--jammer-dbm=-120,oops"], "jammer-dbm"),
    (["sweep", "--kind", "ablation", "--shots", "1,15"], "defense.shots_per_class"),
])
def test_errors_on_a_small_zoo_name_what_the_user_can_set(small_zoo, tmp_path, monkeypatch, capsys, argv, field):
    """Every error a user meets on their own small zoo names a field they can set (or the command's option)
    and what is allowed, on a line of its own; never an internal argument."""
    monkeypatch.setenv("RMTLLMF_CACHE_DIR", str(tmp_path / "cache"))
    extra = ["--workers", "1", "--out", str(tmp_path / "o")] if argv[0] == "sweep" else []
    code, out, err = _cli([*argv, "--zoo", str(small_zoo), "--set", "defense.realign_steps=2", *extra], capsys)
    line = err.strip().splitlines()[-1]
    assert code == 2 and line.startswith(f"error: {field}:"), err
