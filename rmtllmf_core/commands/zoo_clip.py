"""The command-line side of real CLIP zoos: `zoo build clip ...` and `zoo import ...`.

`rmtllmf_core.commands.zoo` calls `add_clip_commands(zoo_subparsers, build_parser)`: the clip options join
the existing `build` parser (used when its positional is `clip`) and `import` becomes a zoo
sub-command. `run_build_clip(args)` is what `zoo build clip` dispatches to.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InputError

# (no torch or open_clip at import: every command's parser is built on start-up, `channel` must stay fast)
PICKLE_HELP = ("allow unpickling checkpoints that are not plain weights (the task-arithmetic paper's published "
               "checkpoints are pickled ImageEncoder modules, which weights-only loading refuses). Unpickling can "
               "execute arbitrary code hidden in the file: use it only for files from a source you trust. Each such "
               "file is converted once to safetensors under OUT/converted/ (found again by the file's sha256) and "
               "never unpickled again; without this flag such a file is refused, unread.")


MAX_DEFAULT_WORKERS = 4  # data-loading processes by default, fewer on a machine with fewer cores


def default_workers() -> int:
    """min(4, available cores): more loader processes than cores only contend (torch warns)."""
    from ..serve.jobs import available_cores  # stdlib only: the parser is built on every start-up

    return min(MAX_DEFAULT_WORKERS, available_cores())


def _add(parser: argparse.ArgumentParser, *flags, **kw) -> None:
    """Add an option unless the parser already has it (the tiny build's --out/--quiet/--threads serve both)."""
    if any(f in parser._option_string_actions for f in flags):
        return
    parser.add_argument(*flags, **kw)


def _model_options(p, clip_only: str = "") -> None:
    _add(p, "--model", default="ViT-B-32", help=f"{clip_only}open_clip model name: ViT-B-32 (default) or ViT-B-16 (the paper's)")
    _add(p, "--pretrained", default="openai",
         help=f"{clip_only}open_clip pretrained tag (default openai; downloaded by open_clip where a network exists) "
              "or a local checkpoint file (.safetensors or a weights-only torch file); 'none' = random init")
    _add(p, "--model-config", default=None, metavar="JSON", help=f"{clip_only}register this open_clip model config first "
                                                                 "(its file name without .json is the model name)")
    _add(p, "--data-root", default=None, metavar="DIR",
         help=f"{clip_only}where the paper's datasets live, in torchvision's layout (DIR/MNIST/raw/, DIR/svhn/, "
              "DIR/gtsrb/, DIR/dtd/, DIR/eurosat/, DIR/SUN397/, DIR/stanford_cars/) and RESISC45 as DIR/resisc45/<class>/; "
              "a missing one is reported with its expected path and how to get it")
    _add(p, "--folder", action="append", default=[], metavar="NAME=PATH",
         help=f"{clip_only}an extra dataset: an ImageFolder directory (a folder of images per class, optionally under "
              "train/ and test/); repeatable")
    _add(p, "--device", default="cpu", help="cpu (default) or cuda[:N]. clip: training and evaluation in mixed precision; "
                                            "tiny: fp32 on the GPU (fast, not bit-identical to the CPU build)")
    _add(p, "--precision", default=None, choices=["fp32", "amp", "amp_bf16"],
         help=f"{clip_only}fp32 on cpu, amp_bf16 on cuda by default")
    _add(p, "--workers", type=int, default=None,
         help=f"{clip_only}data-loading worker processes (default: the available cores, at most {MAX_DEFAULT_WORKERS}; "
              "0 = load in the main process)")
    _add(p, "--eval-samples", type=int, default=None,
         help=f"{clip_only}first N (class-balanced) images per dataset of val and of test for the card's accuracies "
              "(default 1000; 0 = all)")
    _add(p, "--no-pairs", action="store_true", help=f"{clip_only}skip the pairwise task-arithmetic evaluations")
    _add(p, "--val-fraction", type=float, default=None, help=f"{clip_only}validation share held out of training (default 0.1, at most 5000 images)")
    _add(p, "--pool-per-class", type=int, default=None, help=f"{clip_only}episodic-memory images per class for realignment (default 10)")
    _add(p, "--name", default=None, help=f"{clip_only}the zoo's name in its card (default: the output folder's name)")
    _add(p, "--restart", action="store_true", help=f"{clip_only}discard an unfinished build in --out instead of resuming it")
    _add(p, "--keep-work", action="store_true", help=f"{clip_only}keep the per-task scratch files once the zoo is written")
    _add(p, "--download", action="store_true", help=f"{clip_only}download missing torchvision datasets into --data-root "
                                                     "(needs a network; Stanford Cars and RESISC45 cannot be downloaded: "
                                                     "place them there yourself)")


def add_clip_commands(zoo_subparsers, build_parser: argparse.ArgumentParser) -> None:
    """(a) the clip options on the `zoo build` parser, (b) the `zoo import` sub-command."""
    c = "[clip] "
    _model_options(build_parser, c)
    _add(build_parser, "--datasets", default=None, metavar="LIST",
         help=f"{c}comma-separated subset of cars,dtd,eurosat,gtsrb,mnist,resisc45,sun397,svhn (default: all eight); "
              "'none' with --folder for user datasets only")
    _add(build_parser, "--steps", type=int, default=None, help=f"{c}fine-tuning iterations per dataset (default 2000)")
    _add(build_parser, "--batch", type=int, default=None, help=f"{c}batch size (default 128)")
    _add(build_parser, "--lr", type=float, default=None, help=f"{c}AdamW learning rate (default 1e-5)")
    _add(build_parser, "--wd", type=float, default=None, help=f"{c}AdamW weight decay (default 0.1)")
    _add(build_parser, "--warmup", type=int, default=None, help=f"{c}linear warm-up steps before the cosine decay (default 500)")
    _add(build_parser, "--augment", action="store_true", help=f"{c}open_clip's training augmentation (default: evaluation preprocessing)")
    _add(build_parser, "--seed", type=int, default=None, help=f"{c}training seed (default 0)")
    _add(build_parser, "--out", default=None, help="output directory")
    _add(build_parser, "--quiet", action="store_true", help="no progress bars")
    _add(build_parser, "--threads", type=int, default=None, help="torch CPU threads")

    i = zoo_subparsers.add_parser("import", help="turn fine-tuned open_clip checkpoints into a zoo",
                                  description="Build a zoo from fine-tuned image encoders: each TASK=FILE gives that "
                                              "dataset's task vector (checkpoint minus the pretrained base, so "
                                              "--model/--pretrained must be what the checkpoints were fine-tuned "
                                              "from); heads, evaluation and card as `zoo build clip` makes them, on "
                                              "the datasets under --data-root (or --folder).")
    i.add_argument("--finetuned", action="append", default=[], required=True, metavar="TASK=FILE",
                   help="a fine-tuned checkpoint: .safetensors or a weights-only torch state dict (whole CLIP, "
                        "image encoder, or wrapped as model.visual.*); repeatable. TASK is one of the eight datasets "
                        "or a --folder NAME. Pickled whole-module checkpoints (the task-arithmetic paper's) need "
                        "--trust-pickle")
    i.add_argument("--out", required=True, help="output directory of the zoo")
    i.add_argument("--trust-pickle", action="store_true", help=PICKLE_HELP)
    i.add_argument("--quiet", action="store_true", help="no progress bars")
    i.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    _model_options(i)
    i.set_defaults(func=run_import)


def _common(args) -> dict:
    import torch

    from ..zoo.datasets import parse_folders

    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    split = {}
    if args.val_fraction is not None:
        split["val_fraction"] = args.val_fraction
    if args.pool_per_class is not None:
        split["pool_per_class"] = args.pool_per_class
    workers = default_workers() if args.workers is None else args.workers
    if workers < 0:
        raise InputError("workers", f"0 or more, got {workers}")
    return dict(pretrained=None if str(args.pretrained).lower() == "none" else args.pretrained,
                model_config=args.model_config, data_root=args.data_root, folders=parse_folders(args.folder),
                device=args.device, precision=args.precision, workers=workers, eval_samples=args.eval_samples,
                pairs=False if args.no_pairs else None, split=split or None, name=args.name, restart=args.restart,
                download=args.download, keep_work=args.keep_work, progress=not args.quiet)


def run_build_clip(args) -> int:
    """`zoo build clip ...`."""
    from ..zoo.clip import build_clip

    if getattr(args, "micro", False) or getattr(args, "pretrain_cache", None):
        raise InputError("build", "--micro and --pretrain-cache are options of `zoo build tiny`")
    opts = _common(args)
    datasets = None
    if args.datasets is not None:
        datasets = [] if args.datasets.strip().lower() == "none" else [d.strip() for d in args.datasets.split(",") if d.strip()]
    out = args.out or str(Path("zoos") / f"{Path(args.model_config).stem if args.model_config else args.model}-"
                                         f"{Path(str(args.pretrained)).stem}".lower())
    build_clip(out, model=args.model, datasets=datasets, steps=args.steps, batch=args.batch, lr=args.lr, wd=args.wd,
               warmup=args.warmup, augment=True if args.augment else None, seed=args.seed, **opts)
    return 0


def run_import(args) -> int:
    """`zoo import ...`."""
    from ..zoo.datasets import parse_folders
    from ..zoo.importer import import_zoo

    finetuned = parse_folders(args.finetuned, "finetuned")  # same TASK=PATH syntax
    opts = _common(args)
    import_zoo(args.out, finetuned, model=args.model, trust_pickle=args.trust_pickle, **opts)
    return 0
