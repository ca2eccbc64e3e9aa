"""Your own tasks, from folders to a run, timed step by step (docs/real-clip.md quotes it).

    python benchmarks/own_tasks.py                         # a shrunk ViT-B-32-shaped model: minutes on 2 cores
    python benchmarks/own_tasks.py --model ViT-B-32        # the real architecture, random weights (no network)

It writes four small ImageFolder sets of pictures it draws itself (no download: a stand-in for a
researcher's own folders, `--classes` and `--per-class` set their size), then times each command as a
user types it, all with their defaults:

1. `zoo build clip --datasets none --folder NAME=PATH ... --pretrained none` (the zoo);
2. `run --zoo DIR --preset paper_worst_sum_rate` (one run: the defaults fitted to the zoo's splits);
3. `sweep --kind snr --zoo DIR --preset paper_worst_sum_rate` at two jammer powers (R-MTLLMF and none);
4. `arena --zoo DIR --seeds 0 --defenses rmtllmf --attacks worst_sum_rate` (the adaptive jammers).

Every command runs in a fresh process with a private cache, as a new user's would.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from where import print_header  # noqa: E402  (benchmarks/ is the script's own folder)

# ViT-B-32's architecture, shrunk (width 64, 2 layers, 32x32 images, patch 16): the tests' micro CLIP
SHRUNK = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32,
                                          "patch_size": 16},
          "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
TASKS = ("stripes", "blocks", "rings", "corners")


def write_folder(root: Path, kind: str, classes: int, per_class: int, size: int, seed: int) -> Path:
    """`classes` folders of `per_class` noisy pictures whose class is a stripe, a block, a ring or a corner."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    for c in range(classes):
        d = root / f"class_{c:02d}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            a = (rng.random((size, size, 3)) * 90).astype(np.float64)
            if kind == "stripes":
                a[(yy // max(1, size // classes)) == c] += 140
            elif kind == "blocks":  # a bright block in one cell of a 5-wide grid
                cell = size // 5
                a[(c // 5) * cell:(c // 5 + 1) * cell, (c % 5) * cell:(c % 5 + 1) * cell] += 150
            elif kind == "rings":
                r = np.hypot(yy - size / 2, xx - size / 2)
                a[np.abs(r - (c + 1) * size / (2 * classes + 2)) < 2] += 150
            else:
                q = c % 4  # which quarter is bright, and how bright
                a[((yy < size // 2) == (q < 2)) & ((xx < size // 2) == (q % 2 == 0))] += 40 + 25 * (c // 4)
            Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(d / f"{i:03d}.png")
    return root


def timed(cmd: list[str], env: dict) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr[-3000:]}")
    return seconds, done.stdout + done.stderr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="open_clip model (default: the shrunk ViT-B-32-shaped config)")
    ap.add_argument("--classes", type=int, default=10, help="classes per task (default %(default)s)")
    ap.add_argument("--per-class", type=int, default=20, help="images per class (default %(default)s)")
    ap.add_argument("--steps", type=int, default=20, help="fine-tuning steps per task (default %(default)s)")
    ap.add_argument("--work", default=None, help="keep the folders and the zoo here (default: a temporary folder)")
    args = ap.parse_args()
    print_header()
    root = Path(args.work or tempfile.mkdtemp(prefix="own-tasks-"))
    env = {**os.environ, "RMTLLMF_CACHE_DIR": str(root / "cache"), "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    py = [sys.executable, "-m", "rmtllmf_core"]
    size = 32 if args.model is None else 224
    folders = {t: write_folder(root / "data" / t, t, args.classes, args.per_class, max(size, 36), seed=i)
               for i, t in enumerate(TASKS)}
    model = ["--model", args.model] if args.model else ["--model", "vit-shrunk", "--model-config",
                                                         str(_config(root))]
    zoo = root / "zoo"
    build = [*py, "zoo", "build", "clip", *model, "--pretrained", "none", "--datasets", "none", "--quiet",
             *[a for t, p in folders.items() for a in ("--folder", f"{t}={p}")],
             "--steps", str(args.steps), "--batch", "16", "--out", str(zoo)]
    print(f"tasks: {len(TASKS)} folders of {args.classes} classes x {args.per_class} images; model "
          f"{args.model or 'shrunk ViT-B-32 (width 64, 2 layers, 32 px)'}; {args.steps} fine-tuning steps a task")
    rows = []
    for name, cmd in (
        ("zoo build clip", build),
        ("run --preset paper_worst_sum_rate", [*py, "run", "--zoo", str(zoo), "--preset", "paper_worst_sum_rate",
                                               "--json"]),
        ("sweep --kind snr (2 powers x none, R-MTLLMF)", [*py, "sweep", "--kind", "snr", "--zoo", str(zoo), "--preset",
                                                          "paper_worst_sum_rate", "--jammer-dbm=-140,-120",
                                                          "--attacks", "worst_sum_rate", "--defenses", "none,rmtllmf",
                                                          "--out", str(root / "sweep")]),
        ("arena (seed 0, R-MTLLMF, P1)", [*py, "arena", "--zoo", str(zoo), "--seeds", "0", "--defenses", "rmtllmf",
                                          "--attacks", "worst_sum_rate", "--out", str(root / "arena")]),
    ):
        seconds, output = timed(cmd, env)
        rows.append((name, seconds))
        print(f"{name}: {seconds:.1f} s", flush=True)
        if name.startswith("run"):
            result = json.loads(output[output.index("{"):output.rindex("}") + 1])
            avg = result["average_normalized"]
            print(f"  clean {avg['clean']:.3f}, jammed {avg['attacked']:.3f}, R-MTLLMF {avg['defended']:.3f} "
                  "(fractions); warnings:")
            for w in result["warnings"]:
                print(f"  - {w}")
    print(f"folders and zoo: {root}")


def _config(root: Path) -> Path:
    path = root / "vit-shrunk.json"
    path.write_text(json.dumps(SHRUNK))
    return path


if __name__ == "__main__":
    main()
