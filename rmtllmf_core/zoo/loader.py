"""One loader for every zoo: `load_zoo("tiny")`, a zoo directory / card path, or an open_clip model.

A zoo directory holds a card (`card.json`) that names every file with its sha256 and size, the
open_clip model (a config file shipped with the zoo, or an open_clip name + pretrained tag), the
base weights, the task vectors and the frozen heads. Every file is verified against the card
before anything is built, all tensors are read through safetensors (or torch.load with
weights_only=True for `.pt/.bin` checkpoints), and the Zoo is only returned once complete: a
missing, truncated, corrupted or wrong-shape file raises AssetError naming the file and the
command that rebuilds it.

Memory: task vectors stay as stored (fp16) and are converted to fp32 only on access (see
`types.TaskVectors`). Files of at least `MMAP_MIN_BYTES` (a real CLIP zoo's) stay memory-mapped:
safetensors (0.4+) maps the file privately (copy-on-write) and its tensors are views of the map, so
pages are read on first touch and, being file-backed, are not anonymous memory; the base image
encoder's fp32 tensors are then views of `base.safetensors` as well, leaving the model itself the
one resident fp32 copy of the encoder. A mapped file must be replaced atomically (write elsewhere,
then rename; `zoo build clip` / `zoo import` do), never rewritten in place while a process has the
zoo loaded. Smaller files (the embedded tiny zoo) are read into private memory.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import torch
import torch.nn.functional as F

from ..errors import AssetError, InputError
from . import tasks as T
from .data import ProceduralData
from . import BUILTIN, CARD, fingerprint
from .model import create, register_config, tokenizer
from .types import TaskInfo, TaskVectors, Zoo, sha256_file

FORMAT = "rmtllmf-zoo/1"
MMAP_MIN_BYTES = 64 << 20  # zoo files at least this big stay memory-mapped (load_zoo(mmap=None))


def _hint(card: Mapping | None) -> str:
    cmd = (card or {}).get("rebuild_command") or "python -m rmtllmf_core zoo build tiny"
    return f"rebuild it with `{cmd}`"




def _read_card(path: Path) -> tuple[dict, bytes]:
    if not path.is_file():
        raise AssetError(str(path), f"zoo card is missing; {_hint(None)}")
    raw = path.read_bytes()
    try:
        card = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AssetError(str(path), f"zoo card is not valid JSON ({exc}); {_hint(None)}") from None
    if not isinstance(card, dict) or card.get("format") != FORMAT or "files" not in card:
        raise AssetError(str(path), f"not a zoo card of format {FORMAT}; {_hint(None)}")
    return card, raw


def verify_files(root: Path, card: Mapping) -> None:
    """Every file the card lists exists with its size and sha256; raises AssetError otherwise."""
    for rel, meta in card["files"].items():
        p = root / rel
        if not p.is_file():
            raise AssetError(str(p), f"missing zoo file; {_hint(card)}")
        size = p.stat().st_size
        if size != meta["bytes"]:
            raise AssetError(str(p), f"size {size} B, the card says {meta['bytes']} B (truncated or replaced); {_hint(card)}")
        if sha256_file(p) != meta["sha256"]:
            raise AssetError(str(p), f"sha256 does not match the card (corrupted or modified); {_hint(card)}")


def read_tensors(path: Path, card: Mapping | None = None, *, dtype: torch.dtype | None = torch.float32,
                 private: bool = False) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file (or a weights-only torch checkpoint).

    `dtype`: floating tensors converted to it (default float32); None keeps the stored dtypes.
    `private`: every tensor owns its memory. Otherwise a safetensors file's tensors that need no
    conversion are views of a private (copy-on-write) memory map of the file, as
    `safetensors.torch.load_file` returns them: nothing is read until touched.
    """
    path = Path(path)
    if not path.is_file():
        raise AssetError(str(path), f"missing weights file; {_hint(card)}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
            if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
                state = state["state_dict"]
            if not isinstance(state, dict):
                raise ValueError("not a state dict")
            state = {k[7:] if k.startswith("module.") else k: v for k, v in state.items()}
    except AssetError:
        raise
    except Exception as exc:  # safetensors / torch raise various types for damaged files
        raise AssetError(str(path), f"cannot read tensors ({type(exc).__name__}: {exc}); {_hint(card)}") from None
    out = {}
    mapped = path.suffix == ".safetensors"
    for k, v in state.items():
        if not isinstance(v, torch.Tensor):
            raise AssetError(str(path), f"entry {k!r} is not a tensor; {_hint(card)}")
        if dtype is not None and v.is_floating_point() and v.dtype != dtype:
            out[k] = v.to(dtype)
        else:
            out[k] = v.clone() if private and mapped else v
    return out


def _use_mmap(path: Path, mmap: bool | None) -> bool:
    return mmap if mmap is not None else path.stat().st_size >= MMAP_MIN_BYTES


def _check_shapes(path: Path, got: Mapping[str, torch.Tensor], want: Mapping[str, torch.Size], card, what: str) -> None:
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    if missing or extra:
        raise AssetError(str(path), f"{what}: missing keys {missing[:3]}{'...' if len(missing) > 3 else ''}, "
                                    f"unexpected keys {extra[:3]}{'...' if len(extra) > 3 else ''}; {_hint(card)}")
    for k, s in want.items():
        if tuple(got[k].shape) != tuple(s):
            raise AssetError(str(path), f"{what}: {k} has shape {tuple(got[k].shape)}, expected {tuple(s)}; {_hint(card)}")
        if got[k].is_floating_point() and not torch.isfinite(got[k]).all():
            raise AssetError(str(path), f"{what}: {k} holds non-finite values; {_hint(card)}")


def _visual_state(model, state: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The image encoder's parameters, float32, not sharing memory with the model (whose weights
    `zoo eval` overwrites): the tensors of `state` (the model's state dict as read from its file,
    `visual.`-prefixed; fp32 ones used as they are) where it has them, else copies of the model's."""
    out = {}
    for k, v in model.visual.named_parameters():
        s = (state or {}).get("visual." + k)
        if s is not None and tuple(s.shape) == tuple(v.shape):
            out[k] = s if s.dtype == torch.float32 else s.float()
        else:
            out[k] = v.detach().clone().float()
    return out


def _task_infos(card: Mapping) -> dict[str, TaskInfo]:
    return {n: TaskInfo(n, t["title"], t["description"], tuple(t["class_names"])) for n, t in card["tasks"].items()}


_fingerprint = fingerprint  # one definition: the package's, which keys the cache without loading weights


def load_zoo(source: str | Path = "tiny", *, pretrained: str | None = None,
             finetuned: Mapping[str, str | Path] | None = None, tasks: tuple[str, ...] | None = None,
             verify: bool = True, use_disk_cache: bool = True, mmap: bool | None = None) -> Zoo:
    """Load a zoo.

    - ``"tiny"`` (the embedded default under ``assets/tiny``), or a zoo directory, or its ``card.json``;
    - an open_clip model name (e.g. ``"ViT-B-32"``) with ``pretrained`` = an open_clip tag
      (``"openai"``, downloaded by open_clip) or a local checkpoint file (``.safetensors`` or a
      weights-only torch file); ``finetuned`` = {task: checkpoint} gives the task vectors
      (fine-tuned minus base image encoder), and heads are built zero-shot from the text tower.

    `mmap`: keep a zoo directory's weight and task-vector files memory-mapped (True), read them into
    memory (False), or decide by size (None: files of at least MMAP_MIN_BYTES are mapped).
    """
    if isinstance(source, str) and source in BUILTIN:
        return _load_dir(BUILTIN[source], verify, use_disk_cache, mmap=mmap)
    p = Path(source)
    if p.is_dir() or p.name == CARD or p.suffix == ".json" and p.exists():
        return _load_dir(p if p.is_dir() else p.parent, verify, use_disk_cache, card_path=None if p.is_dir() else p,
                         mmap=mmap)
    if isinstance(source, Path) or "/" in str(source) and not str(source).startswith(("hf-hub:", "local-dir:")):
        raise AssetError(str(source), f"no zoo there (expected a directory with {CARD}); {_hint(None)}")
    return load_open_clip(str(source), pretrained=pretrained, finetuned=finetuned, tasks=tasks, use_disk_cache=use_disk_cache)


def _load_dir(root: Path, verify: bool, use_disk_cache: bool, card_path: Path | None = None,
              mmap: bool | None = None) -> Zoo:
    root = Path(root)
    card_path = card_path or root / CARD
    card, raw = _read_card(card_path)
    if verify:
        verify_files(root, card)
    m = card["model"]
    if m.get("config_file"):
        name = register_config(root / m["config_file"])
        if name != m["open_clip_name"]:
            raise AssetError(str(root / m["config_file"]), f"config registers {name!r}, the card says {m['open_clip_name']!r}; {_hint(card)}")
    else:
        name = m["open_clip_name"]
    model = create(name, pretrained=m.get("pretrained"))
    want = {k: v.shape for k, v in model.state_dict().items()}
    state = None
    if m.get("weights"):
        wpath = root / m["weights"]
        # stored dtypes (fp16 text tower): load_state_dict casts while it copies, no fp32 copy of the file
        state = read_tensors(wpath, card, dtype=None, private=not _use_mmap(wpath, mmap))
        _check_shapes(wpath, state, want, card, "base model")
        model.load_state_dict(state, strict=True)
    model.eval()
    for p_ in model.parameters():
        p_.requires_grad_(False)
    base = _visual_state(model, state)
    del state
    vshape = {k: v.shape for k, v in base.items()}
    infos = _task_infos(card)

    tv_path = root / card["task_vectors"]
    flat_tv = read_tensors(tv_path, card, dtype=None, private=not _use_mmap(tv_path, mmap))  # fp16 as stored
    stored = {}
    for t in infos:
        sub = {k[len(t) + 1:]: v for k, v in flat_tv.items() if k.startswith(t + "/")}
        _check_shapes(tv_path, sub, vshape, card, f"task vector {t!r}")
        bad = sorted(k for k, v in sub.items() if not v.is_floating_point())
        if bad:
            raise AssetError(str(tv_path), f"task vector {t!r}: {bad[0]} is not floating point; {_hint(card)}")
        stored[t] = sub
    if len(flat_tv) != sum(len(v) for v in stored.values()):
        raise AssetError(str(tv_path), f"holds tensors of tasks the card does not list; {_hint(card)}")
    tvs = TaskVectors(stored, tuple(base))

    h_path = root / card["heads"]
    heads_raw = read_tensors(h_path, card)
    embed_dim = model.text_projection.shape[1] if getattr(model, "text_projection", None) is not None else None
    heads = {}
    for t, info in infos.items():
        if t not in heads_raw:
            raise AssetError(str(h_path), f"no head for task {t!r}; {_hint(card)}")
        h = heads_raw[t]
        if h.ndim != 2 or h.shape[0] != len(info.class_names) or (embed_dim and h.shape[1] != embed_dim):
            raise AssetError(str(h_path), f"head {t!r} has shape {tuple(h.shape)}, expected ({len(info.class_names)}, {embed_dim}); {_hint(card)}")
        if not torch.allclose(h.norm(dim=1), torch.ones(len(h)), atol=1e-3):
            raise AssetError(str(h_path), f"head {t!r} rows are not unit norm; {_hint(card)}")
        heads[t] = F.normalize(h, dim=1)

    d = card["data"]
    size = model.visual.image_size[0] if isinstance(model.visual.image_size, tuple) else model.visual.image_size
    if d.get("kind") == "datasets":  # a zoo built on real datasets (`zoo build clip`, `zoo import`)
        from .datasets import SplitData

        data = SplitData.from_card(card, size)
    else:
        data = ProceduralData(infos, d["seed"], d["split_per_class"], size, use_disk_cache=use_disk_cache)
    acc = card.get("accuracy", {})
    return Zoo(
        name=card["name"], fingerprint=_fingerprint([raw]), card=card, model=model, base_state=base,
        task_vectors=tvs, heads=heads, logit_scale=float(model.logit_scale.exp()), tasks=infos,
        finetuned_accuracy=dict(acc.get("finetuned", {})), zeroshot_accuracy=dict(acc.get("zeroshot", {})),
        data=data,
    )


def load_open_clip(model_name: str, *, pretrained: str | None = None, finetuned: Mapping[str, str | Path] | None = None,
                   tasks: tuple[str, ...] | None = None, data_seed: int = 0,
                   split_per_class: Mapping[str, int] | None = None, use_disk_cache: bool = True) -> Zoo:
    """A zoo from an open_clip model: base = `pretrained` (tag or local file), task vectors from
    `finetuned` checkpoints, heads zero-shot from the text tower with each task's templates.

    The tasks are our procedural ones (upsampled to the model's input size) until real-dataset
    builders exist; accuracies are not computed here (empty mappings), `zoo eval` does that.
    """
    import open_clip

    if model_name not in open_clip.list_models() and not model_name.startswith(("hf-hub:", "local-dir:")):
        raise InputError("model", f"unknown open_clip model {model_name!r}")
    task_names = tuple(tasks or T.TASK_NAMES)
    for t in task_names:
        if t not in T.TASKS:
            raise InputError("tasks", f"unknown task {t!r}; allowed: {', '.join(T.TASK_NAMES)}")
    parts = [f"{model_name}|{pretrained}".encode()]
    model = create(model_name)
    want = {k: v.shape for k, v in model.state_dict().items()}
    if pretrained:
        pp = Path(pretrained)
        if pp.suffix in (".safetensors", ".pt", ".pth", ".bin") or pp.exists():
            state = read_tensors(pp)
            _check_shapes(pp, state, want, None, "base model")
            model.load_state_dict(state, strict=True)
            parts.append(sha256_file(pp).encode())
        else:  # an open_clip pretrained tag: open_clip downloads and loads it
            model = create(model_name, pretrained=pretrained)
    model.eval()
    for p_ in model.parameters():
        p_.requires_grad_(False)
    base = _visual_state(model)
    vshape = {k: v.shape for k, v in base.items()}
    tvs = {}
    for t, ck in (finetuned or {}).items():
        if t not in task_names:
            raise InputError("finetuned", f"task {t!r} is not among the zoo's tasks")
        ck = Path(ck)
        st = read_tensors(ck)
        vis = {k[len("visual."):]: v for k, v in st.items() if k.startswith("visual.")} or st
        _check_shapes(ck, vis, vshape, None, f"fine-tuned encoder {t!r}")
        # fp16, as a built or imported zoo stores them: 2 bytes a parameter per task in memory
        tvs[t] = {k: (vis[k].float() - base[k]).to(torch.float16) for k in base}
        del st, vis
        parts.append(sha256_file(ck).encode())
    tvs = TaskVectors(tvs, tuple(base))
    tok = tokenizer(model_name)
    from .train import zero_shot_heads

    heads = {t: zero_shot_heads(model, tok, T.TASKS[t].class_names, T.TASKS[t].templates) for t in task_names}
    infos = {t: TaskInfo(t, T.TASKS[t].title, T.TASKS[t].description, T.TASKS[t].class_names) for t in task_names}
    spc = dict(split_per_class or {"train": 300, "val": 20, "test": 40, "pool": 20})
    pcfg = getattr(model.visual, "preprocess_cfg", {}) or {}
    mean = torch.tensor(pcfg.get("mean", (0.48145466, 0.4578275, 0.40821073)))
    std = torch.tensor(pcfg.get("std", (0.26862954, 0.26130258, 0.27577711)))
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else int(size)
    data = ProceduralData(task_names, data_seed, spc, size, mean, std, use_disk_cache)
    card = {"format": FORMAT, "name": model_name, "source": {"open_clip_name": model_name, "pretrained": pretrained,
            "finetuned": {t: str(p) for t, p in (finetuned or {}).items()}},
            "tasks": {t: {"title": i.title, "description": i.description, "class_names": list(i.class_names)} for t, i in infos.items()},
            "data": {"kind": "procedural", "seed": data_seed, "split_per_class": spc}}
    parts.append(json.dumps(card, sort_keys=True).encode())
    return Zoo(name=model_name, fingerprint=_fingerprint(parts), card=card, model=model, base_state=base,
               task_vectors=tvs, heads=heads, logit_scale=float(model.logit_scale.exp()), tasks=infos,
               finetuned_accuracy={}, zeroshot_accuracy={}, data=data)
