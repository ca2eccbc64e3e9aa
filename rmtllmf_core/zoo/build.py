"""`zoo build tiny`: the whole embedded zoo from nothing, deterministically.

pretext corpus -> contrastive pretraining (both towers) -> zero-shot heads (frozen) ->
per-task fine-tuning of the image encoder (AdamW, cosine) -> task vectors -> evaluation
(fine-tuned, zero-shot, task arithmetic with lambda on val, all pairs, cosines) -> assets + card.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import platform
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from tqdm.auto import tqdm

from ..errors import InputError
from . import pretext, tasks as T
from .data import generator_digest
from .model import TINY_CONFIG, create, read_config, register_config, to_input, tokenizer
from .train import eval_tasks, finetune, flat, pretrain, set_state, zero_shot_heads
from .types import sha256_file

# The recipe of the shipped zoo. `micro` shrinks it to a seconds-long smoke build.
RECIPE = {
    "seed": 0,
    "data_seed": 0,
    "split_per_class": {"train": 300, "val": 20, "test": 40, "pool": 20},
    "pretext": {"n": 16384, "concept_fraction": 1.0, "caption_noise": 0.4, "steps": 1500, "batch": 256, "lr": 2e-3, "wd": 0.1, "warmup": 50},
    # the stem at 0.3x the lr: a house-number vector's patch-embedding part alone cost vehicles 9 points
    # and digits 5 in a pair; slower there, fusion gains 3.6 points and pairs 2 (docs/zoo.md)
    "finetune": {"steps": 300, "batch": 64, "lr": 1.5e-4, "wd": 0.1, "warmup": 30, "stem_lr_scale": 0.3,
                 # each user keeps the base's features on the first 4096 pretext images (public, off its task):
                 # without it the weak tasks' vectors broke each other (worst pair 77.6%, docs/zoo.md)
                 "drift_weight": 3.0, "drift_images": 4096},
    "lambda_grid": [round(0.05 * i, 2) for i in range(1, 21)],
    # pairs pick lambda from the same grid as all eight tasks, as in task arithmetic (Ilharco et al. 2023)
    "pair_lambda_grid": [round(0.05 * i, 2) for i in range(1, 21)],
}
MICRO = {
    "seed": 0,
    "data_seed": 0,
    "split_per_class": {"train": 8, "val": 2, "test": 2, "pool": 2},
    "pretext": {"n": 128, "concept_fraction": 0.8, "caption_noise": 0.5, "steps": 2, "batch": 64, "lr": 1e-3, "wd": 0.1, "warmup": 1},
    "finetune": {"steps": 2, "batch": 32, "lr": 1e-4, "wd": 0.1, "warmup": 1, "stem_lr_scale": 0.3,
                 "drift_weight": 1.0, "drift_images": 64},
    "lambda_grid": [0.3, 1.0],
    "pair_lambda_grid": [0.5],
}

REBUILD_HINT = "python -m rmtllmf_core zoo build tiny"


def _round16(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.float16).to(torch.float32)


def _mean(xs):
    xs = list(xs)
    return float(sum(xs) / len(xs))


def run(recipe: dict, *, progress: bool = True, log=print, pretrained_state=None, on_pretrained=None,
        pretrain_cache: Path | None = None, device: str = "cpu", data: dict | None = None) -> dict:
    """Train everything; returns states, heads and measurements (nothing written).

    On a GPU `device` the training and evaluation run there (same recipe, same data and seeds, other
    rounding: a GPU build is not bit-identical to the CPU one, and its pretraining cache key differs).
    Experiments pass `pretrained_state` (skips the pretext corpus and pretraining) and `data` (a
    previous result's task splits) to compare fine-tuning recipes on one base."""
    t_start = time.perf_counter()
    torch.manual_seed(recipe["seed"])
    model_name = register_config(TINY_CONFIG)
    tok = tokenizer(model_name)
    spc = recipe["split_per_class"]
    names = T.TASK_NAMES

    # ---- data
    t0 = time.perf_counter()
    if data is None:
        data = {}
        for name in tqdm(names, desc="task data", disable=not progress):
            C = len(T.TASKS[name].class_names)
            data[name] = {s: T.generate(name, recipe["data_seed"], s, k * C) for s, k in spc.items()}
    P = recipe["pretext"]
    if pretrained_state is None:
        pimg, pcap = pretext.generate(recipe["seed"], P["n"], concept_fraction=P["concept_fraction"],
                                      caption_noise=P["caption_noise"])
        ptok = tok(pcap)
    log(f"data: {time.perf_counter() - t0:.1f}s")

    # ---- pretraining (optionally cached on disk, keyed by everything it depends on)
    t0 = time.perf_counter()
    model = create(model_name, seed=recipe["seed"]).to(device)
    runtime = [torch.__version__, torch.get_num_threads()] + ([str(device)] if str(device) != "cpu" else [])
    # the corpus's concept pictures come from the task generators: their version and source are in the key
    key = hashlib.sha256(json.dumps([recipe["pretext"], recipe["seed"], read_config(TINY_CONFIG), pretext.PRETEXT_VERSION,
                                     T.GENERATOR_VERSION, generator_digest(), *runtime], sort_keys=True).encode()).hexdigest()[:16]
    cache_file = Path(pretrain_cache) / f"pretrained-{key}.safetensors" if pretrain_cache else None
    pretrain_source = "trained in this build"
    if pretrained_state is not None:  # experiments: reuse a pretrained base
        model.load_state_dict(pretrained_state)
        losses = [0.0]
    elif cache_file is not None and cache_file.is_file():
        from safetensors import safe_open
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(cache_file)))
        with safe_open(str(cache_file), "pt") as f:
            m = f.metadata()
        losses = json.loads(m["losses"])  # per step (or per 50 steps for imported runs)
        pretrain_source = f"cached (identical recipe, key {key}); original pretraining took {float(m['seconds']):.0f}s"
    else:
        losses = pretrain(model, pimg, ptok, steps=P["steps"], batch=P["batch"], lr=P["lr"], wd=P["wd"],
                          warmup=P["warmup"], seed=recipe["seed"] + 1, progress=progress)
        if cache_file is not None:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            _save_atomic({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, cache_file,
                         {"losses": json.dumps(losses), "seconds": str(time.perf_counter() - t0)})
    t_pre = time.perf_counter() - t0
    if on_pretrained is not None:
        on_pretrained(model)
    if losses:
        log(f"pretrain: {t_pre:.1f}s ({pretrain_source}), loss {np.mean(losses[:20]):.3f} -> {np.mean(losses[-20:]):.3f}")
    # ship the base encoder in fp32, the text tower in fp16: round it now so measurements use shipped values
    with torch.no_grad():
        for n_, p in model.named_parameters():
            if not n_.startswith("visual."):
                p.copy_(_round16(p))
    logit_scale = float(model.logit_scale.detach().exp())
    heads = {n: zero_shot_heads(model, tok, T.TASKS[n].class_names, T.TASKS[n].templates) for n in names}
    visual = model.visual
    keys = [k for k, _ in visual.named_parameters()]
    base = {k: v.detach().clone() for k, v in visual.named_parameters()}

    # ---- fine-tuning
    F_ = recipe["finetune"]
    t0 = time.perf_counter()
    anchor = None
    if F_.get("drift_weight", 0.0) > 0:  # a prefix of the pretext corpus: the same images the base was trained on
        n_anchor = F_["drift_images"]
        anchor = pimg[:n_anchor] if pretrained_state is None else pretext.generate(
            recipe["seed"], n_anchor, concept_fraction=P["concept_fraction"], caption_noise=P["caption_noise"])[0]
    tvs = {}
    for i, name in enumerate(tqdm(names, desc="fine-tune", disable=not progress)):
        set_state(visual, base)
        x, y = data[name]["train"]
        # per-task iterations where the recipe names them (as the task-arithmetic recipe sets epochs per dataset)
        steps = F_.get("steps_per_task", {}).get(name, F_["steps"])
        finetune(visual, heads[name], logit_scale, x, y, steps=steps, batch=F_["batch"], lr=F_["lr"],
                 wd=F_["wd"], warmup=F_["warmup"], seed=recipe["seed"] + 100 + i,
                 stem_lr_scale=F_.get("stem_lr_scale", 1.0), anchor_images_u8=anchor,
                 drift_weight=F_.get("drift_weight", 0.0), progress=progress, desc=name)
        tvs[name] = {k: _round16(v.detach() - base[k]) for k, v in visual.named_parameters()}
    t_ft = time.perf_counter() - t0
    log(f"fine-tune: {t_ft:.1f}s")

    # ---- evaluation
    t0 = time.perf_counter()
    inputs = {n: {s: (to_input(data[n][s][0]), torch.from_numpy(data[n][s][1])) for s in ("val", "test")} for n in names}
    res = evaluate(visual, base, tvs, heads, inputs, names, recipe, progress=progress)
    log(f"evaluate: {time.perf_counter() - t0:.1f}s")
    set_state(visual, base)
    res.update(model=model, model_name=model_name, base=base, task_vectors=tvs, heads=heads, logit_scale=logit_scale, device=str(device),
               data=data, keys=keys, pretrain_loss=[float(np.mean(losses[i:i + 50])) for i in range(0, len(losses), 50)],
               pretrain_source=pretrain_source,
               times={"pretrain_s": t_pre, "finetune_s": t_ft, "total_s": time.perf_counter() - t_start})
    return res


def evaluate(visual, base, tvs, heads, inputs, names, recipe, progress=True) -> dict:
    val = lambda t: inputs[t]["val"]
    test = lambda t: inputs[t]["test"]
    ft = {t: eval_tasks(visual, base, [(1.0, tvs[t])], heads, test, [t])[t] for t in names}
    ft_val = {t: eval_tasks(visual, base, [(1.0, tvs[t])], heads, val, [t])[t] for t in names}
    zs = eval_tasks(visual, base, [], heads, test, names)
    # task arithmetic over all tasks: lambda by mean normalised val accuracy
    curve = {}
    for lam in tqdm(recipe["lambda_grid"], desc="lambda", disable=not progress, leave=False):
        acc = eval_tasks(visual, base, [(lam, tvs[t]) for t in names], heads, val, names)
        curve[lam] = _mean(acc[t] / max(ft_val[t], 1e-9) for t in names)
    lam = max(curve, key=lambda k: (curve[k], -k))
    ta = eval_tasks(visual, base, [(lam, tvs[t]) for t in names], heads, test, names)
    norm = lambda acc: {t: acc[t] / max(ft[t], 1e-9) for t in acc}
    # pairs
    pairs = {}
    for a, b in tqdm(list(itertools.combinations(names, 2)), desc="pairs", disable=not progress, leave=False):
        best, best_l = -1.0, None
        for l2 in recipe["pair_lambda_grid"]:
            acc = eval_tasks(visual, base, [(l2, tvs[a]), (l2, tvs[b])], heads, val, [a, b])
            s = _mean(acc[t] / max(ft_val[t], 1e-9) for t in (a, b))
            if s > best:
                best, best_l = s, l2
        acc = eval_tasks(visual, base, [(best_l, tvs[a]), (best_l, tvs[b])], heads, test, [a, b])
        pairs[f"{a}+{b}"] = {"lambda": best_l, "accuracy": acc, "normalized_avg": _mean(norm(acc).values())}
    keys = list(base)
    fl = torch.stack([flat(tvs[t], keys) for t in names])
    fl = torch.nn.functional.normalize(fl, dim=1)
    cos = (fl @ fl.T).tolist()
    off = [cos[i][j] for i in range(len(names)) for j in range(len(names)) if i != j]
    return {
        "finetuned_accuracy": ft, "finetuned_val_accuracy": ft_val, "zeroshot_accuracy": zs,
        "zeroshot_normalized_avg": _mean(norm(zs).values()),
        "task_arithmetic": {
            "lambda": lam, "lambda_curve_val_normalized": {str(k): v for k, v in curve.items()},
            "accuracy": ta, "normalized": norm(ta), "absolute_avg": _mean(ta.values()),
            "normalized_avg": _mean(norm(ta).values()),
        },
        "pairs": pairs,
        "pairs_normalized_avg": _mean(p["normalized_avg"] for p in pairs.values()),
        "pairs_normalized_min": min(p["normalized_avg"] for p in pairs.values()),
        "cosine": {"tasks": list(names), "matrix": cos, "max_offdiag": max(off), "mean_offdiag": _mean(off)},
        "task_vector_norms": {t: float(flat(tvs[t], keys).norm()) for t in names},
    }


def summary(res: dict) -> str:
    ta = res["task_arithmetic"]
    lines = [f"{'task':16s} {'ft':>6s} {'zs':>6s} {'ta':>6s}"]
    for t in res["finetuned_accuracy"]:
        lines.append(f"{t:16s} {res['finetuned_accuracy'][t]:6.3f} {res['zeroshot_accuracy'][t]:6.3f} {ta['accuracy'][t]:6.3f}")
    lines.append(f"lambda={ta['lambda']} TA normalised {ta['normalized_avg']:.3f} | base normalised "
                 f"{res['zeroshot_normalized_avg']:.3f} | pairs avg {res['pairs_normalized_avg']:.3f} "
                 f"min {res['pairs_normalized_min']:.3f} | cos max {res['cosine']['max_offdiag']:.3f} "
                 f"mean {res['cosine']['mean_offdiag']:.3f}")
    return "\n".join(lines)


def sample_sheet(name: str, seed: int, path: Path, per_class: int = 8, scale: int = 1) -> None:
    """PNG page of samples: row c = class c, `per_class` test images per row, upscaled x`scale`."""
    from PIL import Image

    C = len(T.TASKS[name].class_names)
    imgs, _ = T.generate(name, seed, "test", C * per_class)
    rows = [np.concatenate([imgs[c + C * j] for j in range(per_class)], axis=1) for c in range(C)]
    sheet = np.concatenate(rows, axis=0)
    im = Image.fromarray(sheet).resize((sheet.shape[1] * scale, sheet.shape[0] * scale), Image.NEAREST)
    im.save(path, format="PNG", optimize=True)


def _accuracy_subset(visual, res, recipe, n_per_task: int) -> dict:
    """Accuracies on the first n test samples per task (what the tests recompute)."""
    names = list(res["heads"])
    sub = {t: (to_input(res["data"][t]["test"][0][:n_per_task]), torch.from_numpy(res["data"][t]["test"][1][:n_per_task])) for t in names}
    f = lambda t: sub[t]
    base, tvs, heads = res["base"], res["task_vectors"], res["heads"]
    lam = res["task_arithmetic"]["lambda"]
    out = {
        "n_per_task": n_per_task,
        "finetuned": {t: eval_tasks(visual, base, [(1.0, tvs[t])], heads, f, [t])[t] for t in names},
        "zeroshot": eval_tasks(visual, base, [], heads, f, names),
        "task_arithmetic": eval_tasks(visual, base, [(lam, tvs[t]) for t in names], heads, f, names),
    }
    set_state(visual, base)
    return out


def _save_atomic(tensors: dict, path: Path, metadata: dict) -> None:
    """save_file into a temporary sibling, then rename: a process that has the old file memory-mapped
    keeps reading the old bytes, and a killed build never leaves a half-written file behind."""
    tmp = path.with_name(path.name + ".partial")
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def write_assets(res: dict, recipe: dict, out: Path, *, micro: bool, wall_s: float) -> dict:
    """Write the zoo files and its card into `out` (replacing a previous zoo there)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model, names = res["model"], list(res["heads"])
    cfg_name = f"{res['model_name']}.json"
    if TINY_CONFIG.resolve() != (out / cfg_name).resolve():
        shutil.copyfile(TINY_CONFIG, out / cfg_name)
    files = {"model_config": cfg_name, "weights": "base.safetensors", "task_vectors": "task_vectors.safetensors",
             "heads": "heads.safetensors"}
    state = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu()
        state[k] = v.float().contiguous() if k.startswith("visual.") or k == "logit_scale" else v.to(torch.float16).contiguous()
    meta = {"zoo": "tiny-micro" if micro else "tiny"}  # one key: safetensors writes several in a random order
    _save_atomic(state, out / files["weights"], meta)
    tv = {f"{t}/{k}": v.to("cpu", torch.float16).contiguous() for t in names for k, v in res["task_vectors"][t].items()}
    _save_atomic(tv, out / files["task_vectors"], meta)
    _save_atomic({t: res["heads"][t].float().contiguous() for t in names}, out / files["heads"], meta)
    (out / "samples").mkdir(exist_ok=True)
    for t in names:
        sample_sheet(t, recipe["data_seed"], out / "samples" / f"{t}.png")
    listed = [files["model_config"], files["weights"], files["task_vectors"], files["heads"]] + [f"samples/{t}.png" for t in names]
    visual = model.visual
    n_params = lambda mod: int(sum(p.numel() for p in mod.parameters()))
    check = _accuracy_subset(visual, res, recipe, min(100, len(res["data"][names[0]]["test"][1])))
    card = {
        "format": "rmtllmf-zoo/1",
        "name": "tiny-micro" if micro else "tiny",
        "description": ("The embedded tiny CLIP zoo: an open_clip ViT pretrained contrastively by us on a synthetic "
                        "pretext corpus (captioned shapes, letters and concept pictures drawn from the task "
                        "generators' own random stream, never a task split), zero-shot heads from its text tower, "
                        "eight procedural tasks, eight fine-tuned image encoders kept as task vectors."),
        "rebuild_command": REBUILD_HINT + (" --micro" if micro else "") + ("" if out.resolve() == TINY_CONFIG.parent.resolve() else f" --out {out}"),
        "model": {"open_clip_name": res["model_name"], "config_file": files["model_config"], "weights": files["weights"],
                  "pretrained": None, "config": read_config(TINY_CONFIG),
                  "dtypes": {"visual": "float32", "text": "float16", "task_vectors": "float16", "heads": "float32"},
                  "parameters": {"visual": n_params(visual), "total": n_params(model), "text": n_params(model) - n_params(visual) - 1},
                  "logit_scale": res["logit_scale"]},
        "task_vectors": files["task_vectors"],
        "heads": files["heads"],
        "samples": {t: {"file": f"samples/{t}.png", "layout": "row c = class c, 8 test images (32x32) per row"} for t in names},
        "tasks": {t: {"title": T.TASKS[t].title, "description": T.TASKS[t].description,
                      "class_names": list(T.TASKS[t].class_names), "templates": list(T.TASKS[t].templates)} for t in names},
        "data": {"kind": "procedural", "generator_version": T.GENERATOR_VERSION, "seed": recipe["data_seed"],
                 "split_per_class": recipe["split_per_class"], "image_size": 32,
                 "label_order": "interleaved: sample i has class i % C, so the first k*C samples hold k per class"},
        "recipe": recipe,
        "accuracy": {
            "split": "test",
            "finetuned": res["finetuned_accuracy"],
            "zeroshot": res["zeroshot_accuracy"],
            "zeroshot_normalized_avg": res["zeroshot_normalized_avg"],
            "finetuned_avg": _mean(res["finetuned_accuracy"].values()),
            "zeroshot_avg": _mean(res["zeroshot_accuracy"].values()),
            "task_arithmetic": res["task_arithmetic"],
            "pairs": res["pairs"],
            "pairs_normalized_avg": res["pairs_normalized_avg"],
            "pairs_normalized_min": res["pairs_normalized_min"],
            "check_subset": check,
        },
        "cosine": res["cosine"],
        "task_vector_norms": res["task_vector_norms"],
        "build": {
            "wall_time_s": round(wall_s, 1), "stage_times_s": {k: round(v, 1) for k, v in res["times"].items()},
            "pretrain_loss_every_50_steps": [round(x, 4) for x in res["pretrain_loss"]],
            "pretrain_source": res["pretrain_source"],
            "torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version(),
            "threads": torch.get_num_threads(), "machine": platform.machine(), "device": res["device"],
        },
    }
    card["files"] = {rel: {"sha256": sha256_file(out / rel), "bytes": (out / rel).stat().st_size} for rel in listed}
    card["total_bytes"] = sum(f["bytes"] for f in card["files"].values())
    tmp = out / "card.json.tmp"
    tmp.write_text(json.dumps(card, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, out / "card.json")
    return card


def build(out: Path | None = None, *, micro: bool = False, progress: bool = True, log=print,
          pretrain_cache: Path | None = None, overrides: dict | None = None, threads: int | None = 1,
          device: str = "cpu") -> dict:
    """The `zoo build tiny` command: train, measure, write; returns the card.

    `threads` defaults to 1: the shipped zoo is built single-threaded, which makes the floating-point
    results reproducible and avoids OpenMP oversubscription collapsing on a busy shared CPU.
    `device` 'cuda' trains and evaluates on a GPU (fast; not bit-identical to the CPU build).
    """
    prev_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _build(out, micro, progress, log, pretrain_cache, overrides, device)
    finally:
        torch.set_num_threads(prev_threads)


def _build(out, micro, progress, log, pretrain_cache, overrides, device) -> dict:
    from .model import TINY_DIR

    t0 = time.perf_counter()
    recipe = json.loads(json.dumps(MICRO if micro else RECIPE))
    for k, v in (overrides or {}).items():
        if k not in recipe:
            raise InputError(f"recipe.{k}", f"unknown recipe key; allowed: {', '.join(recipe)}")
        if isinstance(v, dict):
            recipe[k].update(v)
        else:
            recipe[k] = v
    unknown = sorted(set(recipe["finetune"].get("steps_per_task", {})) - set(T.TASK_NAMES))
    if unknown:
        raise InputError("recipe.finetune.steps_per_task", f"unknown task(s) {unknown}; allowed: {', '.join(T.TASK_NAMES)}")
    scale = recipe["finetune"].get("stem_lr_scale", 1.0)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 <= scale <= 1:
        raise InputError("recipe.finetune.stem_lr_scale", f"a number in [0, 1] (the stem's share of the lr); got {scale!r}")
    weight = recipe["finetune"].get("drift_weight", 0.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight < float("inf"):
        raise InputError("recipe.finetune.drift_weight", f"a number >= 0 (0: no feature anchoring); got {weight!r}")
    n_anchor, n_pretext = recipe["finetune"].get("drift_images", 0), recipe["pretext"]["n"]
    if weight > 0 and (isinstance(n_anchor, bool) or not isinstance(n_anchor, int) or not 1 <= n_anchor <= n_pretext):
        raise InputError("recipe.finetune.drift_images",
                         f"a whole number in [1, {n_pretext}] (a prefix of the pretext corpus); got {n_anchor!r}")
    pretext.noise_per_task(recipe["pretext"]["caption_noise"])  # before minutes of data and pretraining
    if str(device) != "cpu" and not (str(device).startswith("cuda") and torch.cuda.is_available()):
        raise InputError("device", f"cpu, or cuda[:N] where torch sees a GPU; got {device!r}")
    res = run(recipe, progress=progress, log=log, pretrain_cache=pretrain_cache, device=device)
    out = Path(out) if out is not None else TINY_DIR
    card = write_assets(res, recipe, out, micro=micro, wall_s=time.perf_counter() - t0)
    log(summary(res))
    log(f"wrote {out} ({card['total_bytes'] / 1e6:.1f} MB) in {card['build']['wall_time_s']:.0f}s")
    return card
