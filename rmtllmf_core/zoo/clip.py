"""`zoo build clip`: a real CLIP zoo (open_clip ViT-B/32, ViT-B/16, ...) on the paper's eight datasets.

    python -m rmtllmf_core zoo build clip --model ViT-B-32 --pretrained openai --data-root DIR --device cuda

pretrained open_clip model (an open_clip tag, downloaded by open_clip, or a local checkpoint file)
-> zero-shot heads from each dataset's class names and templates (frozen) -> per dataset, the image
encoder fine-tuned with its head frozen (the task-arithmetic recipe: AdamW, lr 1e-5, weight decay
0.1, batch 128, 2,000 iterations, cosine schedule with 500 warm-up steps, gradient norm clipped
at 1) -> task vectors (fine-tuned minus base, fp16) -> evaluation (fine-tuned, zero-shot, task
arithmetic with lambda chosen on validation, all pairs, cosines) -> the same layout and card as
the embedded zoo (`card.json`, `base.safetensors`, `task_vectors.safetensors`, `heads.safetensors`),
so `load_zoo(DIR)` loads it like the tiny one.

Resumable: every finished task's vector is written atomically to `OUT/.build/tv-<task>.safetensors`
and recorded in `OUT/.build/progress.json` (with the build's config); a killed build run again with
the same options skips what is done. Memory: task vectors stay fp16 (memory-mapped from their
files while the final file is streamed), fusion adds them into the model's own parameters key by
key, so at most two full-precision copies of the encoder (the model and the base) are held.
"""
from __future__ import annotations

import itertools
import json
import math
import os
import platform
import shutil
import struct
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..errors import AssetError, InputError
from . import datasets as D
from .model import create, register_config, tokenizer
from .types import sha256_file

FORMAT = "rmtllmf-zoo/1"
WORK = ".build"
PROGRESS = "progress.json"

# the task-arithmetic recipe (Ilharco et al. 2023), and this build's evaluation budget
RECIPE = {
    "seed": 0,
    "finetune": {"steps": 2000, "batch": 128, "lr": 1e-5, "wd": 0.1, "warmup": 500, "clip_grad": 1.0, "augment": False},
    "splits": dict(D.SPLIT_DEFAULTS),
    "eval_samples": 1000,              # first n (class-balanced) images per task of val and of test; 0 = all
    "lambda_grid": [round(0.05 * i, 2) for i in range(1, 21)],
    "pair_lambda_grid": [0.3, 0.5, 0.7, 1.0],
    "pairs": True,
}
# options that do not change the result (may differ between a build and its resumption)
RUNTIME_KEYS = ("device", "workers", "precision")




def _atomic_json(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _atomic_save(tensors: Mapping[str, torch.Tensor], path: Path, metadata: Mapping[str, str] | None = None) -> None:
    from safetensors.torch import save_file

    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=dict(metadata or {}))
    os.replace(tmp, path)


_ST_DTYPES = {torch.float16: "F16", torch.float32: "F32", torch.bfloat16: "BF16", torch.int64: "I64"}


def stream_safetensors(out: Path, entries: Sequence[tuple[str, Path, str]], metadata: Mapping[str, str] | None = None) -> None:
    """Write one safetensors file whose tensor `name` is tensor `key` of file `src`, for each
    (name, src, key), streaming tensor by tensor from memory-mapped inputs (one tensor in memory)."""
    from safetensors import safe_open

    header: dict = {"__metadata__": dict(metadata or {})} if metadata else {}
    offset = 0
    for name, src, key in entries:
        with safe_open(str(src), "pt") as f:
            sl = f.get_slice(key)
            dtype, shape = sl.get_dtype(), sl.get_shape()
        size = int(np.prod(shape, dtype=np.int64)) * {"F16": 2, "BF16": 2, "F32": 4, "I64": 8}[dtype]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "wb") as w:
        w.write(struct.pack("<Q", len(hb)))
        w.write(hb)
        opened: dict[Path, object] = {}
        try:
            for name, src, key in entries:
                if src not in opened:
                    for f in opened.values():
                        f.__exit__(None, None, None)
                    opened = {src: safe_open(str(src), "pt").__enter__()}
                t = opened[src].get_tensor(key).contiguous()
                w.write(t.view(torch.uint8).numpy().tobytes() if t.dtype == torch.bfloat16 else t.numpy().tobytes())
        finally:
            for f in opened.values():
                f.__exit__(None, None, None)
    os.replace(tmp, out)


# ----------------------------------------------------------------------------- model

def load_base(model: str, pretrained: str | None, model_config: str | Path | None = None, log=print, seed: int = 0):
    """(open_clip model on CPU, open_clip name, config path or None, pretrained description).

    `pretrained`: an open_clip tag (e.g. 'openai', downloaded by open_clip where a network exists),
    a local checkpoint file (.safetensors, or a weights-only torch file), or None (random init).
    `model_config`: a JSON model config to register first (its stem is the model name).
    `seed`: the random initialisation's seed (weights a checkpoint does not cover, or all without one).
    """
    import open_clip

    cfg_path = None
    if model_config:
        cfg_path = Path(model_config)
        if not cfg_path.is_file():
            raise InputError("model_config", f"no such file: {cfg_path}")
        model = register_config(cfg_path)
    name = model
    if name not in open_clip.list_models():
        raise InputError("model", f"unknown open_clip model {name!r} (e.g. ViT-B-32, ViT-B-16; or --model-config FILE)")
    if pretrained and not Path(pretrained).suffix and not Path(pretrained).exists():  # an open_clip tag
        tags = open_clip.list_pretrained_tags_by_model(name)
        if pretrained not in tags:
            raise InputError("pretrained", f"{name} has no pretrained tag {pretrained!r}; tags: {', '.join(tags) or 'none'}")
        if open_clip.get_pretrained_cfg(name, pretrained).get("quick_gelu") and not name.endswith("-quickgelu") \
                and f"{name}-quickgelu" in open_clip.list_models():
            log(f"{name} + {pretrained}: these weights were trained with QuickGELU, using {name}-quickgelu")
            name = f"{name}-quickgelu"
        try:
            m = create(name, pretrained=pretrained)
        except Exception as exc:  # no network, bad cache, ...
            raise AssetError(pretrained, f"open_clip could not load {name} pretrained={pretrained!r} "
                                         f"({type(exc).__name__}: {exc}); without a network, pass a local checkpoint "
                                         f"file as --pretrained") from None
        return m, name, cfg_path, f"open_clip:{pretrained}"
    m = create(name, seed=seed)
    if pretrained:
        from .loader import read_tensors

        p = Path(pretrained)
        state = read_tensors(p)
        if "state_dict" in state:
            state = state["state_dict"]
        missing, unexpected = m.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise AssetError(str(p), f"not a {name} checkpoint: missing {missing[:3]}, unexpected {unexpected[:3]}")
        return m, name, cfg_path, f"file:{p.name} sha256:{sha256_file(p)[:16]}"
    return m, name, cfg_path, "random init"


@torch.no_grad()
def zero_shot_head(model, tok, class_names: Sequence[str], templates: Sequence[str], device="cpu") -> torch.Tensor:
    """[C, D] unit rows: per class, the normalised mean of the normalised template embeddings."""
    rows = []
    for c in class_names:
        e = model.encode_text(tok([t.format(c) for t in templates]).to(device)).float()
        rows.append(F.normalize(F.normalize(e, dim=-1).mean(0), dim=-1))
    return torch.stack(rows).cpu()


def cosine_lr(step: int, total: int, warmup: int, lr: float) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    return 0.5 * lr * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def _autocast(device: str, precision: str):
    if device.startswith("cuda") and precision in ("amp", "amp_bf16"):
        return torch.autocast("cuda", dtype=torch.bfloat16 if precision == "amp_bf16" else torch.float16)
    return nullcontext()


def finetune(visual: torch.nn.Module, head: torch.Tensor, logit_scale: float, source: D.Source, image_size: int,
             mean, std, *, steps: int, batch: int, lr: float, wd: float, warmup: int, clip_grad: float,
             augment: bool, seed: int, device: str = "cpu", precision: str = "fp32", workers: int = 0,
             progress: bool = True, desc: str = "fine-tune") -> list[float]:
    """Fine-tune `visual` in place on the train split of `source` with the frozen `head`."""
    import open_clip

    tf = open_clip.image_transform(image_size, is_train=augment, mean=tuple(mean), std=tuple(std))
    ds = D.PreprocessedSplit(source, "train", image_size, transform=tf)
    g = torch.Generator().manual_seed(seed)
    dl = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, generator=g, num_workers=workers,
                                     drop_last=len(ds) >= batch, pin_memory=device.startswith("cuda"),
                                     persistent_workers=workers > 0)
    params = [p for p in visual.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    scaler = torch.amp.GradScaler("cuda") if device.startswith("cuda") and precision == "amp" else None
    head = head.to(device)
    visual.train()
    losses: list[float] = []
    bar = tqdm(total=steps, desc=desc, disable=not progress, mininterval=1.0, leave=False)
    step = 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        while step < steps:
            for x, y in dl:
                if step >= steps:
                    break
                for grp in opt.param_groups:
                    grp["lr"] = cosine_lr(step, steps, warmup, lr)
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                with _autocast(device, precision):
                    f = F.normalize(visual(x).float(), dim=-1)
                    loss = F.cross_entropy(logit_scale * f @ head.T, y)
                opt.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.unscale_(opt)
                    torch.nn.utils.clip_grad_norm_(params, clip_grad)
                    scaler.step(opt)
                    scaler.update()
                else:
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(params, clip_grad)
                    opt.step()
                losses.append(float(loss.detach()))
                step += 1
                bar.update(1)
                if step % 20 == 0:
                    bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    bar.close()
    visual.eval()
    del opt
    return losses


# ----------------------------------------------------------------------------- flat-tensor fusion

class Fuser:
    """Loads base + sum(coef_i * tv_i) into the model's parameters in place, key by key.

    Holds the base (fp32, one copy) and the task vectors as they are stored (fp16); the model's own
    parameters are the second full-precision copy. Nothing else of encoder size is allocated.
    """

    def __init__(self, visual: torch.nn.Module, base: Mapping[str, torch.Tensor], device: str = "cpu"):
        self.visual = visual
        self.keys = [k for k, _ in visual.named_parameters()]
        self.base = {k: base[k].to(device) for k in self.keys}
        self.tvs: dict[str, dict[str, torch.Tensor]] = {}
        self.device = device

    def add_vector(self, task: str, path: Path) -> None:
        from safetensors import safe_open

        with safe_open(str(path), "pt", device="cpu") as f:
            self.tvs[task] = {k: f.get_tensor(k).to(self.device) for k in self.keys}

    @torch.no_grad()
    def set(self, coefs: Mapping[str, float] | None = None) -> None:
        params = dict(self.visual.named_parameters())
        for k in self.keys:
            p = params[k]
            p.copy_(self.base[k])
            for t, c in (coefs or {}).items():
                p.add_(self.tvs[t][k].to(p.dtype), alpha=float(c))

    def gram(self, tasks: Sequence[str]) -> torch.Tensor:
        """[T, T] float64 inner products of the task vectors, accumulated key by key (no flat fp32 copies)."""
        g = torch.zeros(len(tasks), len(tasks), dtype=torch.float64)
        for k in self.keys:
            x = torch.stack([self.tvs[t][k].reshape(-1) for t in tasks]).double()
            g += (x @ x.T).cpu()
        return g


@torch.inference_mode()
def correct(visual, head: torch.Tensor, x_u8: torch.Tensor, y: torch.Tensor, mean, std, device="cpu",
            precision="fp32", batch: int = 256) -> torch.Tensor:
    """Per-sample correctness (bool [n]) of `visual` + `head` on uint8 images."""
    out = []
    head = head.to(device)
    for i in range(0, len(y), batch):
        x = D.normalize_uint8(x_u8[i:i + batch], mean, std).to(device)
        with _autocast(device, precision):
            f = F.normalize(visual(x).float(), dim=-1)
        out.append((f @ head.T).argmax(-1).cpu() == y[i:i + batch])
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.bool)


def _mean(xs) -> float:
    xs = list(xs)
    return float(sum(xs) / len(xs)) if xs else float("nan")


def evaluate(fuser: Fuser, heads, evalset, names, recipe, mean, std, device, precision, progress=True, n_check=100) -> dict:
    """Fine-tuned, zero-shot, task arithmetic (lambda on val), pairs, cosines; `evalset[t][split]` = (uint8, labels)."""
    def acc(coefs, split, tasks):
        fuser.set(coefs)
        return {t: correct(fuser.visual, heads[t], *evalset[t][split], mean, std, device, precision) for t in tasks}

    frac = lambda c: {t: float(v.float().mean()) for t, v in c.items()}
    ft_c = {t: acc({t: 1.0}, "test", [t])[t] for t in tqdm(names, desc="eval fine-tuned", disable=not progress, leave=False)}
    ft_val = {t: frac(acc({t: 1.0}, "val", [t]))[t] for t in names}
    zs_c = acc({}, "test", names)
    ft, zs = frac(ft_c), frac(zs_c)
    norm = lambda a, ref: {t: a[t] / max(ref[t], 1e-9) for t in a}
    curve = {}
    for lam in tqdm(recipe["lambda_grid"], desc="lambda", disable=not progress, leave=False):
        curve[lam] = _mean(norm(frac(acc({t: lam for t in names}, "val", names)), ft_val).values())
    lam = max(curve, key=lambda k: (curve[k], -k))
    ta_c = acc({t: lam for t in names}, "test", names)
    ta = frac(ta_c)
    pairs = {}
    if recipe.get("pairs", True):
        for a, b in tqdm(list(itertools.combinations(names, 2)), desc="pairs", disable=not progress, leave=False):
            scores = {l2: _mean(norm(frac(acc({a: l2, b: l2}, "val", [a, b])), ft_val).values()) for l2 in recipe["pair_lambda_grid"]}
            best = max(scores, key=lambda k: (scores[k], -k))
            pa = frac(acc({a: best, b: best}, "test", [a, b]))
            pairs[f"{a}+{b}"] = {"lambda": best, "accuracy": pa, "normalized_avg": _mean(norm(pa, ft).values())}
    fuser.set({})
    gram = fuser.gram(names)
    norms = gram.diagonal().sqrt()
    cos = (gram / (norms[:, None] * norms[None, :]).clamp_min(1e-30)).tolist()
    off = [cos[i][j] for i in range(len(names)) for j in range(len(names)) if i != j]
    k = {t: min(n_check, len(ft_c[t])) for t in names}
    sub = lambda c: {t: float(c[t][:k[t]].float().mean()) for t in c}
    return {
        "finetuned_accuracy": ft, "finetuned_val_accuracy": ft_val, "zeroshot_accuracy": zs,
        "zeroshot_normalized_avg": _mean(norm(zs, ft).values()),
        "task_arithmetic": {"lambda": lam, "lambda_curve_val_normalized": {str(k_): v for k_, v in curve.items()},
                            "accuracy": ta, "normalized": norm(ta, ft), "absolute_avg": _mean(ta.values()),
                            "normalized_avg": _mean(norm(ta, ft).values())},
        "pairs": pairs,
        "pairs_normalized_avg": _mean(p["normalized_avg"] for p in pairs.values()) if pairs else None,
        "pairs_normalized_min": min((p["normalized_avg"] for p in pairs.values()), default=None),
        "cosine": {"tasks": list(names), "matrix": cos, "max_offdiag": max(off, default=0.0), "mean_offdiag": _mean(off) if off else 0.0},
        "task_vector_norms": {t: float(norms[i]) for i, t in enumerate(names)},
        "check_subset": {"n_per_task": min(k.values()), "finetuned": sub(ft_c), "zeroshot": sub(zs_c), "task_arithmetic": sub(ta_c)},
        "n_eval": {t: {s: len(evalset[t][s][1]) for s in ("val", "test")} for t in names},
    }


# ----------------------------------------------------------------------------- the build

def write_sample_sheet(x_u8: torch.Tensor, y: torch.Tensor, path: Path, per_class: int = 8, max_classes: int = 10,
                       tile: int = 64) -> str:
    """PNG page: row r = the r-th class (of at most `max_classes`), `per_class` test images per row."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    classes = sorted(set(y.tolist()))[:max_classes]
    size = min(tile, x_u8.shape[-1])
    blank = torch.zeros(3, size, size, dtype=torch.uint8)
    rows = []
    for c in classes:
        idx = (y == c).nonzero().squeeze(1)[:per_class]
        imgs = F.interpolate(x_u8[idx].float(), size=(size, size), mode="bilinear", antialias=True,
                             align_corners=False).round().clamp(0, 255).to(torch.uint8) if len(idx) else x_u8[:0]
        cells = list(imgs) + [blank] * (per_class - len(imgs))
        rows.append(torch.cat(cells, dim=2))
    sheet = torch.cat(rows, dim=1).permute(1, 2, 0).contiguous().numpy()
    tmp = path.with_name(path.name + ".tmp")
    Image.fromarray(sheet).save(tmp, format="PNG", optimize=True)
    os.replace(tmp, path)
    return f"row r = class r (first {len(classes)} classes), {per_class} test images ({size}x{size}) per row"


def _config(model, pretrained, model_config, data_root, tasks, folders, recipe, download) -> dict:
    return {"model": model, "pretrained": str(pretrained) if pretrained else None,
            "model_config": str(Path(model_config).resolve()) if model_config else None,
            "data_root": str(Path(data_root).resolve()) if data_root else None,
            "tasks": list(tasks), "folders": {k: str(Path(v).resolve()) for k, v in folders.items()},
            "recipe": recipe}


def _rebuild_command(cfg: dict, out: Path) -> str:
    parts = ["python -m rmtllmf_core zoo build clip", f"--model {cfg['model']}"]
    if cfg["model_config"]:
        parts.append(f"--model-config {cfg['model_config']}")
    if cfg["pretrained"]:
        parts.append(f"--pretrained {cfg['pretrained']}")
    if cfg["data_root"]:
        parts.append(f"--data-root {cfg['data_root']}")
    paper = [t for t in cfg["tasks"] if t not in cfg["folders"]]
    if paper != list(D.PAPER_TASKS):
        parts.append(f"--datasets {','.join(paper) or 'none'}")
    parts += [f"--folder {k}={v}" for k, v in cfg["folders"].items()]
    parts.append(f"--out {out}")
    return " ".join(parts)


def build_clip(out: str | Path, *, model: str = "ViT-B-32", pretrained: str | None = "openai",
               data_root: str | Path | None = None, datasets: Sequence[str] | None = None,
               folders: Mapping[str, str | Path] | None = None, model_config: str | Path | None = None,
               steps: int | None = None, batch: int | None = None, lr: float | None = None, wd: float | None = None,
               warmup: int | None = None, augment: bool | None = None, eval_samples: int | None = None,
               pairs: bool | None = None, seed: int | None = None, split: Mapping | None = None,
               lambda_grid: Sequence[float] | None = None,
               device: str = "cpu", precision: str | None = None, workers: int = 0, download: bool = False,
               name: str | None = None, restart: bool = False, progress: bool = True, log=print,
               after_task: Callable[[str], None] | None = None, imported: Mapping[str, Path] | None = None,
               rebuild_command: str | None = None, keep_work: bool = False) -> dict:
    """Build (or resume) a CLIP zoo in `out`; returns the card. See the module docstring.

    `imported`: task -> a safetensors file of that task's fine-tuned image encoder (see `importer`):
    its task vector is taken from the file instead of fine-tuning. `keep_work`: keep the per-task
    scratch files (`OUT/.build/tv-*.safetensors`) once the zoo is written (default: removed, the
    progress manifest stays).
    """
    t_start = time.perf_counter()
    out = Path(out)
    folders = dict(folders or {})
    tasks = list(D.PAPER_TASKS if datasets is None else datasets) + [f for f in folders if f not in (datasets or ())]
    if not tasks:
        raise InputError("datasets", "at least one dataset")
    if len(set(tasks)) != len(tasks):
        raise InputError("datasets", f"each dataset at most once, got {tasks}")
    for t in tasks:
        if t not in folders and t not in D.DATASETS:
            raise InputError("datasets", f"unknown dataset {t!r}: one of {', '.join(D.DATASETS)}, or --folder {t}=PATH")
    if any(t not in folders for t in tasks) and data_root is None:
        raise InputError("data_root", "--data-root DIR is needed for the paper's datasets: the folder that holds them in "
                                      "torchvision's layout (DIR/MNIST/raw/, DIR/svhn/, DIR/resisc45/<class>/, ...; "
                                      "--download fetches those torchvision can), or give a dataset as an "
                                      "ImageFolder with --folder NAME=PATH (`zoo build clip --datasets none` for "
                                      "folders only)")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("device", "cuda requested but torch sees no GPU; use --device cpu")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise InputError("device", f"cpu or cuda[:N], got {device!r}")
    precision = precision or ("amp_bf16" if device.startswith("cuda") else "fp32")
    if precision not in ("fp32", "amp", "amp_bf16"):
        raise InputError("precision", f"fp32, amp or amp_bf16, got {precision!r}")
    recipe = json.loads(json.dumps(RECIPE))
    ft = recipe["finetune"]
    for k, v in (("steps", steps), ("batch", batch), ("lr", lr), ("wd", wd), ("warmup", warmup), ("augment", augment)):
        if v is not None:
            ft[k] = v
    if ft["steps"] < 1 or ft["batch"] < 1 or ft["warmup"] < 0 or not ft["lr"] > 0 or ft["wd"] < 0:
        raise InputError("finetune", f"steps >= 1, batch >= 1, warmup >= 0, lr > 0, wd >= 0; got {ft}")
    if eval_samples is not None:
        if eval_samples < 0:
            raise InputError("eval_samples", f"0 (all) or more, got {eval_samples}")
        recipe["eval_samples"] = eval_samples
    if pairs is not None:
        recipe["pairs"] = bool(pairs)
    if lambda_grid is not None:
        grid = sorted({round(float(x), 4) for x in lambda_grid})
        if not grid or grid[0] <= 0:
            raise InputError("lambda_grid", f"positive scaling coefficients, got {list(lambda_grid)}")
        recipe["lambda_grid"] = grid
    if seed is not None:
        recipe["seed"] = int(seed)
    recipe["splits"].update(split or {})

    imported = {t: Path(p) for t, p in (imported or {}).items()}
    for t in imported:
        if t not in tasks:
            raise InputError("finetuned", f"task {t!r} is not among the zoo's datasets {tasks}")
    cfg = _config(model, pretrained, model_config, data_root, tasks, folders, recipe, download)
    if imported:
        cfg["imported"] = {t: sha256_file(p) for t, p in imported.items()}
    # ---- datasets first: a missing one fails before any training, and before OUT/.build exists
    sources = {t: D.open_task(t, data_root, folder=folders.get(t), download=download, split_cfg=recipe["splits"])
               for t in tqdm(tasks, desc="datasets", disable=not progress, leave=False)}

    work = out / WORK
    prog_path = work / PROGRESS
    if restart and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    prog = {"config": cfg, "done": {}, "base": None, "heads": None}
    if prog_path.is_file():
        old = json.loads(prog_path.read_text(encoding="utf-8"))
        if old.get("config") != cfg:
            raise InputError("out", f"{out} holds an unfinished build with other options; run it again with the "
                                    f"same options to resume, pass --restart to start over, or choose another --out")
        prog = old
        if prog["done"]:
            log(f"resuming: {len(prog['done'])} of {len(tasks)} task(s) already fine-tuned ({', '.join(prog['done'])})")
    _atomic_json(prog_path, prog)

    for t, s_ in sources.items():
        n_val = s_.split_sizes()["val"]
        if n_val < 50:
            log(f"warning: {t} has {n_val} validation images; the engine's lambda search reads 50 per task "
                f"(pipeline.LAMBDA_VALIDATION_SAMPLES): add images or raise --val-fraction")

    # ---- base model
    t0 = time.perf_counter()
    m, oc_name, cfg_path, pre_desc = load_base(model, pretrained, model_config, log, seed=recipe["seed"])
    base_file = out / "base.safetensors"
    if prog.get("base") and base_file.is_file() and sha256_file(base_file) == prog["base"]:
        from safetensors.torch import load_file  # resumed: exactly the base the finished tasks were trained from

        m.load_state_dict(load_file(str(base_file)), strict=True)
    else:
        with torch.no_grad():  # the text tower ships in fp16: round it now so the heads use shipped values
            for n_, p in m.named_parameters():
                if not n_.startswith("visual.") and n_ != "logit_scale":
                    p.copy_(p.half().float())
        state = {k: (v.float() if k.startswith("visual.") or k == "logit_scale" else v.half()) for k, v in m.state_dict().items()}
        _atomic_save(state, base_file, {"zoo": "clip", "pretrained": pre_desc})
        del state
        prog["base"] = sha256_file(base_file)
        prog["heads"] = None  # heads and finished tasks belong to the base they were made from
        prog["done"] = {}
        _atomic_json(prog_path, prog)
    visual = m.visual
    size = visual.image_size
    image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
    pcfg = getattr(visual, "preprocess_cfg", {}) or {}
    mean, std = tuple(pcfg.get("mean", D.OPENAI_MEAN)), tuple(pcfg.get("std", D.OPENAI_STD))
    logit_scale = float(m.logit_scale.detach().exp())
    m.to(device)
    for p in m.parameters():
        p.requires_grad_(False)

    heads_work = work / "heads.safetensors"
    if prog.get("heads") and heads_work.is_file():
        from safetensors.torch import load_file

        heads = load_file(str(heads_work))
    else:
        tok = tokenizer(oc_name)
        heads = {t: zero_shot_head(m, tok, s.class_names, s.templates, device)
                 for t, s in tqdm(sources.items(), desc="zero-shot heads", disable=not progress, leave=False)}
        _atomic_save(heads, heads_work)
        prog["heads"] = sha256_file(heads_work)
        _atomic_json(prog_path, prog)
    t_heads = time.perf_counter() - t0
    base = {k: v.detach().clone() for k, v in visual.named_parameters()}

    # ---- fine-tuning, one task at a time, each saved before the next starts
    t0 = time.perf_counter()
    for p in visual.parameters():
        p.requires_grad_(True)
    for i, t in enumerate(tqdm(tasks, desc="fine-tune", disable=not progress)):
        tv_file = work / f"tv-{t}.safetensors"
        if t in prog["done"] and tv_file.is_file() and sha256_file(tv_file) == prog["done"][t]["sha256"]:
            continue
        with torch.no_grad():
            for k, p in visual.named_parameters():
                p.copy_(base[k])
        ts = time.perf_counter()
        if t in imported:
            from safetensors import safe_open

            with torch.no_grad(), safe_open(str(imported[t]), "pt") as f:
                tv = {k: (f.get_tensor(k).to(device).float() - base[k]).half() for k in base}
            _atomic_save(tv, tv_file, {"task": t, "imported": imported[t].name})
            del tv
            prog["done"][t] = {"sha256": sha256_file(tv_file), "seconds": round(time.perf_counter() - ts, 1), "imported": True}
            _atomic_json(prog_path, prog)
            continue
        losses = finetune(visual, heads[t], logit_scale, sources[t], image_size, mean, std, steps=ft["steps"],
                          batch=ft["batch"], lr=ft["lr"], wd=ft["wd"], warmup=ft["warmup"], clip_grad=ft["clip_grad"],
                          augment=ft["augment"], seed=recipe["seed"] + 1000 * (i + 1), device=device,
                          precision=precision, workers=workers, progress=progress, desc=t)
        with torch.no_grad():
            tv = {k: (p.detach() - base[k]).half() for k, p in visual.named_parameters()}
        _atomic_save(tv, tv_file, {"task": t})
        del tv
        prog["done"][t] = {"sha256": sha256_file(tv_file), "seconds": round(time.perf_counter() - ts, 1),
                           "loss_first": round(float(np.mean(losses[:10])), 4), "loss_last": round(float(np.mean(losses[-10:])), 4)}
        _atomic_json(prog_path, prog)
        log(f"{t}: fine-tuned in {prog['done'][t]['seconds']:.0f}s, loss {prog['done'][t]['loss_first']:.3f} -> "
            f"{prog['done'][t]['loss_last']:.3f}")
        if after_task is not None:
            after_task(t)
    for p in visual.parameters():
        p.requires_grad_(False)
    t_ft = time.perf_counter() - t0

    # ---- evaluation on flat fp16 vectors
    t0 = time.perf_counter()
    n_eval = recipe["eval_samples"] or None
    evalset = {}
    for t, s in tqdm(sources.items(), desc="eval data", disable=not progress, leave=False):
        sizes = s.split_sizes()
        evalset[t] = {sp: D.load_uint8(s, sp, None if n_eval is None else min(n_eval, sizes[sp]), image_size, workers)
                      for sp in ("val", "test")}
    samples = {t: write_sample_sheet(*evalset[t]["test"], out / "samples" / f"{t}.png") for t in tasks}
    fuser = Fuser(visual, base, device)
    del base
    for t in tasks:
        fuser.add_vector(t, work / f"tv-{t}.safetensors")
    res = evaluate(fuser, heads, evalset, tasks, recipe, mean, std, device, precision, progress)
    del evalset
    t_eval = time.perf_counter() - t0

    # ---- the zoo files and card
    files = {"weights": "base.safetensors", "task_vectors": "task_vectors.safetensors", "heads": "heads.safetensors"}
    meta = {"zoo": "clip", "model": oc_name}
    stream_safetensors(out / files["task_vectors"], [(f"{t}/{k}", work / f"tv-{t}.safetensors", k) for t in tasks
                                                     for k in fuser.keys], meta)
    _atomic_save({t: heads[t].float() for t in tasks}, out / files["heads"], meta)
    listed = [files["weights"], files["task_vectors"], files["heads"]] + [f"samples/{t}.png" for t in tasks]
    if cfg_path is not None:
        shutil.copyfile(cfg_path, out / cfg_path.name)
        listed.insert(0, cfg_path.name)
    import open_clip

    n_params = lambda mod: int(sum(p.numel() for p in mod.parameters()))
    card = {
        "format": FORMAT,
        "name": name or out.name,
        "description": (f"A CLIP zoo: open_clip {oc_name} ({pre_desc}) fine-tuned per dataset with frozen zero-shot "
                        f"heads (task-arithmetic recipe); task vectors in fp16."),
        "rebuild_command": rebuild_command or _rebuild_command(cfg, out),
        "model": {"open_clip_name": oc_name, "config_file": cfg_path.name if cfg_path else None, "weights": files["weights"],
                  "pretrained": None, "pretrained_source": pre_desc, "config": open_clip.get_model_config(oc_name),
                  "dtypes": {"visual": "float32", "text": "float16", "task_vectors": "float16", "heads": "float32"},
                  "parameters": {"visual": n_params(visual), "total": n_params(m), "text": n_params(m) - n_params(visual) - 1},
                  "logit_scale": logit_scale},
        "task_vectors": files["task_vectors"],
        "heads": files["heads"],
        "samples": {t: {"file": f"samples/{t}.png", "layout": samples[t]} for t in tasks},
        "tasks": {t: {"title": s.title, "description": s.description, "class_names": list(s.class_names),
                      "templates": list(s.templates)} for t, s in sources.items()},
        "data": {"kind": "datasets", "root": cfg["data_root"], "image_size": image_size, "mean": list(mean), "std": list(std),
                 "splits": recipe["splits"],
                 "datasets": {t: {"folder": cfg["folders"].get(t), "location": s.location,
                                  "source": f"torchvision.datasets.{D.DATASETS[t].torchvision}" if t not in folders
                                  and D.DATASETS[t].torchvision else "ImageFolder",
                                  "fingerprint": s.fingerprint(), "sizes": s.split_sizes()} for t, s in sources.items()},
                 "label_order": "class-interleaved: the first n images of a split are balanced and always the same"},
        "recipe": {**recipe, "imported_tasks": sorted(imported)} if imported else recipe,
        "accuracy": {
            "split": "test", "n_eval": res["n_eval"],
            "finetuned": res["finetuned_accuracy"], "zeroshot": res["zeroshot_accuracy"],
            "zeroshot_normalized_avg": res["zeroshot_normalized_avg"],
            "finetuned_avg": _mean(res["finetuned_accuracy"].values()), "zeroshot_avg": _mean(res["zeroshot_accuracy"].values()),
            "task_arithmetic": res["task_arithmetic"], "pairs": res["pairs"],
            "pairs_normalized_avg": res["pairs_normalized_avg"], "pairs_normalized_min": res["pairs_normalized_min"],
            "check_subset": res["check_subset"],
        },
        "cosine": res["cosine"],
        "task_vector_norms": res["task_vector_norms"],
        "build": {
            "wall_time_s": round(time.perf_counter() - t_start, 1),
            "stage_times_s": {"base_and_heads_s": round(t_heads, 1), "finetune_s": round(t_ft, 1), "evaluate_s": round(t_eval, 1)},
            "per_task": prog["done"], "device": device, "precision": precision,
            "torch": torch.__version__, "open_clip": open_clip.__version__, "python": platform.python_version(),
            "machine": platform.machine(),
        },
    }
    card["files"] = {rel: {"sha256": sha256_file(out / rel), "bytes": (out / rel).stat().st_size} for rel in listed}
    card["total_bytes"] = sum(f["bytes"] for f in card["files"].values())
    _atomic_json(out / "card.json", card)
    prog["finished"] = True
    _atomic_json(prog_path, prog)
    if not keep_work:  # the zoo's task_vectors.safetensors holds them all now
        for t in tasks:
            (work / f"tv-{t}.safetensors").unlink(missing_ok=True)
    ta = res["task_arithmetic"]
    log(f"wrote {out} ({card['total_bytes'] / 1e6:.1f} MB) in {card['build']['wall_time_s']:.0f}s: fine-tuned avg "
        f"{card['accuracy']['finetuned_avg']:.3f}, zero-shot avg {card['accuracy']['zeroshot_avg']:.3f}, task arithmetic "
        f"(lambda {ta['lambda']}) normalised {ta['normalized_avg']:.3f}")
    return card
