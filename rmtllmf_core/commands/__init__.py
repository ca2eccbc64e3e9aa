"""`python -m rmtllmf_core <command>`: every command, in this package; one dispatcher, commands
registered by their modules (channel, zoo and zoo_clip, pipeline: run, sweep, calibrate, ldpc-tables,
paper; merge: methods, leaderboard, warm; arena; host).

Each command module exposes ``register(subparsers)`` which adds its parser and sets
``func(args) -> int``. Errors of ours print one line on stderr and exit 2; nothing else
is caught, so a real bug still shows its traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import RmtllmfError

# module path -> registers one or more sub-commands (imported lazily: `channel` must not pay for torch)
COMMAND_MODULES = (
    "rmtllmf_core.commands.channel",
    "rmtllmf_core.commands.zoo",
    "rmtllmf_core.commands.pipeline",
    "rmtllmf_core.commands.merge",
    "rmtllmf_core.commands.arena",
    "rmtllmf_core.commands.host",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m rmtllmf_core",
        description="R-MTLLMF Studio engine: wireless uplink, jamming attacks, fusion and defenses.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # a command whose module is not there yet
            if exc.name != name:
                raise
            continue
        module.register(sub)
    return parser


def _close_progress_bars() -> None:
    """Close any open tqdm bar (it ends its line), if tqdm was loaded at all."""
    tqdm = sys.modules.get("tqdm")
    for bar in list(getattr(getattr(tqdm, "tqdm", None), "_instances", ()) or ()):
        bar.close()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except RmtllmfError as exc:
        _close_progress_bars()  # the error on a line of its own, never inside a bar's line
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
