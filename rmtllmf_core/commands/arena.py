"""`arena`: every defense against the non-adaptive worst-case jammers and against jammers that know it."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .pipeline import _ints, _names, _tqdm_progress, _workers, add_backend, backend_kw, write_rows


def register(sub: argparse._SubParsersAction) -> None:
    from ..studies.arena import ATTACKS, DEFENSES

    a = sub.add_parser("arena", help="every defense x the paper's channels, against the non-adaptive jammer and "
                       "against the strongest jammer that knows the defense (same power); writes arena.csv, "
                       "arena.json, arena.md and arena.html")
    a.add_argument("--out", default="out/arena", help="output folder (default: %(default)s)")
    a.add_argument("--zoo", default="tiny", help="the zoo (default: %(default)s)")
    a.add_argument("--seeds", default="0,1,2", help="comma-separated seeds, averaged (default: %(default)s)")
    a.add_argument("--defenses", default=",".join(DEFENSES),
                   help="comma-separated defenses, combined with '+' (default: %(default)s)")
    a.add_argument("--attacks", default=",".join(ATTACKS), help="comma-separated channels (default: %(default)s)")
    a.add_argument("--workers", type=int, default=None,
                   help="worker processes, one torch thread each (default: the available cores)")
    add_backend(a)
    a.set_defaults(func=cmd_arena)


def cmd_arena(args) -> int:
    from ..studies import arena, plots
    from ..studies.work import execute

    seeds = _ints(args.seeds, "seeds")
    work = arena.arena_work(args.zoo, seeds, _names(args.defenses), _names(args.attacks))
    workers = _workers(args.workers)
    print(f"{len(work.points)} runs, {work.missing()} not cached yet", file=sys.stderr, flush=True)
    bar, progress = _tqdm_progress("arena")
    points = execute(work, progress, workers=workers, **backend_kw(args))
    bar.close()
    cells = arena.arena_cells(points)
    rows = arena.arena_rows(points)
    out = Path(args.out)
    write_rows(rows, out, "arena")   # arena.csv and arena.json (each row says what produced it)
    (out / "arena_cells.json").write_text(json.dumps(cells, indent=1))
    (out / "arena.md").write_text(arena.markdown(cells, seeds))
    plots.arena_heatmap(cells).write_html(out / "arena.html", include_plotlyjs=True)
    print("\n".join(arena.reading(cells)))
    print(f"wrote {len(rows)} rows to {out}/arena.csv (and .json), arena.md and arena.html")
    return 0
