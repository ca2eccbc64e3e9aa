"""`zoo import`: fine-tuned open_clip checkpoints -> a zoo (the same layout and card as a built one).

    python -m rmtllmf_core zoo import --model ViT-B-32 --pretrained openai --data-root DIR \\
        --finetuned mnist=ft/mnist.safetensors --finetuned svhn=ft/svhn.pt ... --out zoos/vit-b-32

Checkpoints are read without unpickling anything:
- ``.safetensors`` files, or torch files that `torch.load(weights_only=True)` accepts (a state dict,
  possibly under "state_dict", possibly with "module." prefixes): the whole CLIP model's state dict
  (``visual.*`` keys are taken), an image encoder wrapped as ``model.visual.*`` or ``image_encoder.*``,
  or the image encoder's own state dict;
- the task-arithmetic paper's published checkpoints are pickled whole modules: they are refused
  unless the caller passes ``trust_pickle=True`` (``--trust-pickle``). Unpickling runs whatever code
  the file names, so only do that for files from a source you trust. A trusted pickle is converted
  ONCE to ``<out>/converted/<name>-<sha>.safetensors``; later runs find that file (by the pickle's
  sha256) and never unpickle again. Classes the pickle names that are not importable here (the
  paper's ``src.modeling.ImageEncoder``) are replaced by inert stand-ins that only keep their state.
"""
from __future__ import annotations

import io
import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Mapping

import torch

from ..errors import AssetError, InputError
from .types import sha256_file



class _Inert:
    """Stand-in for a class a trusted pickle names but this environment cannot import: keeps its state."""

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], (dict, type(None))):
            state = {**(state[0] or {}), **(state[1] or {})}
        if isinstance(state, dict):
            self.__dict__.update(state)
        else:
            self.__dict__["_state"] = state


def _tolerant_unpickler_module():
    class Unpickler(pickle.Unpickler):
        def find_class(self, module, name):
            try:
                return super().find_class(module, name)
            except (ImportError, AttributeError):
                return type(name, (_Inert,), {"__module__": f"inert.{module}"})

    class Module:  # what torch.load expects of pickle_module
        pass

    Module.Unpickler = Unpickler
    Module.load = lambda f, **kw: Unpickler(f, **kw).load()
    Module.__name__ = "rmtllmf_tolerant_pickle"
    return Module


def _collect(obj, prefix: str, out: dict, seen: set) -> None:
    """State of a (possibly stand-in) nn.Module tree: its _parameters and _buffers, recursively."""
    if id(obj) in seen:
        return
    seen.add(id(obj))
    d = getattr(obj, "__dict__", {}) or {}
    for key in ("_parameters", "_buffers"):
        for k, v in (d.get(key) or {}).items():
            if isinstance(v, torch.Tensor):
                out[prefix + k] = v.detach()
    for k, m in (d.get("_modules") or {}).items():
        if m is not None:
            _collect(m, f"{prefix}{k}.", out, seen)
    if not d.get("_modules"):  # plain objects holding modules as attributes (wrappers)
        for k, v in d.items():
            if not k.startswith("_") and hasattr(v, "__dict__") and ("_parameters" in vars(v) or "_modules" in vars(v)):
                _collect(v, f"{prefix}{k}.", out, seen)


def _as_state(obj) -> dict[str, torch.Tensor] | None:
    if isinstance(obj, Mapping):
        if "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
            obj = obj["state_dict"]
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return {(k[7:] if k.startswith("module.") else k): v for k, v in obj.items()}
        return None
    out: dict[str, torch.Tensor] = {}
    _collect(obj, "", out, set())
    return out or None


def _unpickle_trusted(path: Path) -> dict[str, torch.Tensor]:
    mod = _tolerant_unpickler_module()
    if zipfile.is_zipfile(path):
        obj = torch.load(str(path), map_location="cpu", weights_only=False, pickle_module=mod)
    else:
        with open(path, "rb") as f:
            obj = mod.Unpickler(io.BufferedReader(f)).load()
    state = _as_state(obj)
    if not state:
        raise AssetError(str(path), f"unpickled a {type(obj).__name__}, found no tensors in it")
    return state


def _refusal_reason(exc: BaseException) -> str:
    """What weights-only loading objected to, in one line (torch's own message is a page long)."""
    text = str(exc)
    m = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if m:
        return f"it names the Python object {m.group(1)}, which weights-only loading does not import"
    m = re.search(r"WeightsUnpickler error:\s*([^\n]+)", text)
    if m:
        return f"weights-only loading stopped at: {m.group(1).strip()[:120]}"
    first = text.splitlines()[0][:160] if text else ""
    return f"{type(exc).__name__}{': ' + first if first else ''}"


def read_checkpoint(path: str | Path, *, trust_pickle: bool = False, convert_dir: str | Path | None = None,
                    log=print) -> tuple[dict[str, torch.Tensor], Path]:
    """(state dict, the file it now comes from). A pickle that weights-only loading refuses raises
    AssetError unless `trust_pickle`; then it is converted to safetensors in `convert_dir` (reused on
    later calls, found by the pickle's sha256) and the state comes from that file."""
    from safetensors.torch import load_file, save_file

    path = Path(path)
    if not path.is_file():
        raise AssetError(str(path), "no such checkpoint file")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path)), path
        except Exception as exc:
            raise AssetError(str(path), f"cannot read safetensors ({type(exc).__name__}: {exc})") from None
    sha = sha256_file(path)
    converted = Path(convert_dir) / f"{path.stem}-{sha[:16]}.safetensors" if convert_dir else None
    if converted is not None and converted.is_file():
        log(f"{path.name}: using its safetensors conversion {converted}")
        return load_file(str(converted)), converted
    try:
        with warnings.catch_warnings():  # "pickle protocol 4" notes on plain pickles: refused below anyway
            warnings.simplefilter("ignore", UserWarning)
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
        state = _as_state(obj)
        if state is None:
            raise AssetError(str(path), f"holds a {type(obj).__name__}, not a state dict of tensors")
        return state, path
    except AssetError:
        raise
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError, ValueError, EOFError) as exc:
        if not trust_pickle:
            raise AssetError(str(path), "is a pickled checkpoint that weights-only loading refuses "
                                        f"({_refusal_reason(exc)}). Unpickling it could "
                                        "run arbitrary code, so it is not loaded. If you trust its source (e.g. the "
                                        "task-arithmetic paper's published checkpoints), pass --trust-pickle: it is then "
                                        "converted once to safetensors and never unpickled again.") from None
    log(f"{path.name}: unpickling (trusted by --trust-pickle) and converting to safetensors")
    try:
        state = _unpickle_trusted(path)
    except AssetError:
        raise
    except Exception as exc:
        raise AssetError(str(path), f"cannot unpickle ({type(exc).__name__}: {exc})") from None
    if converted is None:
        raise InputError("convert_dir", "a directory for the safetensors conversion of a trusted pickle")
    converted.parent.mkdir(parents=True, exist_ok=True)
    tmp = converted.with_name(converted.name + ".tmp")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp), metadata={"converted_from": path.name, "sha256": sha})
    tmp.replace(converted)
    return load_file(str(converted)), converted


def visual_state(state: Mapping[str, torch.Tensor], want: Mapping[str, torch.Size], source: str) -> dict[str, torch.Tensor]:
    """The image-encoder part of a checkpoint, keyed as open_clip's `model.visual` parameters and
    checked against `want` (name -> shape); AssetError naming the file otherwise."""
    vis = {k.split("visual.", 1)[1]: v for k, v in state.items() if "visual." in k}
    if not vis:
        vis = dict(state)
    missing = sorted(set(want) - set(vis))
    if missing:
        raise AssetError(source, f"not an image encoder of this model: missing {missing[:3]}"
                                 f"{'...' if len(missing) > 3 else ''} (has {sorted(vis)[:3]}...)")
    for k, s in want.items():
        if tuple(vis[k].shape) != tuple(s):
            raise AssetError(source, f"{k} has shape {tuple(vis[k].shape)}, the model expects {tuple(s)}")
        if not torch.isfinite(vis[k].float()).all():
            raise AssetError(source, f"{k} holds non-finite values")
    return {k: vis[k].float() for k in want}


def prepare_finetuned(finetuned: Mapping[str, str | Path], visual_shapes: Mapping[str, torch.Size], out: Path, *,
                      trust_pickle: bool = False, log=print) -> dict[str, Path]:
    """task -> a safetensors file holding exactly the fine-tuned image encoder (keys of `visual_shapes`),
    written under `out/.import/` (checked once here, streamed later)."""
    from .clip import _atomic_save

    for p in finetuned.values():  # before anything is written under `out`
        if not Path(p).is_file():
            raise AssetError(str(p), "no such checkpoint file")
    dest = Path(out) / ".import"
    dest.mkdir(parents=True, exist_ok=True)
    paths = {}
    for t, p in finetuned.items():
        state, src = read_checkpoint(p, trust_pickle=trust_pickle, convert_dir=Path(out) / "converted", log=log)
        vis = visual_state(state, visual_shapes, str(p))
        del state
        target = dest / f"{t}.safetensors"
        _atomic_save(vis, target, {"task": t, "source": Path(p).name, "via": src.name})
        paths[t] = target
    return paths


def import_zoo(out: str | Path, finetuned: Mapping[str, str | Path], *, model: str = "ViT-B-32",
               pretrained: str | None = "openai", model_config: str | Path | None = None, trust_pickle: bool = False,
               log=print, **build_options) -> dict:
    """Build a zoo from fine-tuned checkpoints (no training): the base, heads, evaluation and card as
    `build_clip` makes them, with each task vector = checkpoint's image encoder - base. Returns the card."""
    from .clip import build_clip, load_base

    if not finetuned:
        raise InputError("finetuned", "at least one TASK=CHECKPOINT")
    m, _, _, _ = load_base(model, pretrained, model_config, log=lambda *_: None)
    shapes = {k: v.shape for k, v in m.visual.named_parameters()}
    del m
    files = prepare_finetuned(finetuned, shapes, Path(out), trust_pickle=trust_pickle, log=log)
    folders = build_options.get("folders") or {}
    paper = [t for t in finetuned if t not in folders]
    build_options.setdefault("datasets", paper)
    cmd = ["python -m rmtllmf_core zoo import", f"--model {model}"]
    cmd += [f"--model-config {Path(model_config).resolve()}"] if model_config else []
    cmd += [f"--pretrained {pretrained}"] if pretrained else ["--pretrained none"]
    cmd += [f"--data-root {Path(build_options['data_root']).resolve()}"] if build_options.get("data_root") else []
    cmd += [f"--folder {k}={Path(v).resolve()}" for k, v in folders.items()]
    cmd += [f"--finetuned {t}={Path(p).resolve()}" for t, p in finetuned.items()]
    cmd += ["--trust-pickle"] if trust_pickle else []
    cmd += [f"--out {out}"]
    card = build_clip(out, model=model, pretrained=pretrained, model_config=model_config, imported=files, log=log,
                      rebuild_command=" ".join(cmd), **build_options)
    if not build_options.get("keep_work"):
        for p in files.values():  # fp32 image encoders, only needed until the zoo is written
            p.unlink(missing_ok=True)
    return card
