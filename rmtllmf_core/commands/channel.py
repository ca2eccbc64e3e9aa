"""`python -m rmtllmf_core channel --scenario FILE.json [--json] [--draws K]`."""
from __future__ import annotations

import argparse
import json
import math

from ..errors import InputError
from ..validation import read_json_object


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "channel",
        help="evaluate one uplink scenario: per-user SIC rank, SINR, rate, MSE under an attack",
        description="Evaluate a wireless uplink scenario (JSON file: an explicit 'channel' {re, im} "
        "N_R x Q, or geometry fields; tx_power_w, noise_power_w, jammer_power_w, attack, target_user; "
        "or a whole scenario file, for its wireless part). A field left out takes the calibrated paper "
        "uplink's value, the app's default.",
    )
    parser.add_argument("--scenario", required=True, metavar="FILE.json", help="scenario JSON file ('-' for stdin)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--draws", type=int, default=None, metavar="K", help="also run K Monte Carlo fading draws")
    parser.set_defaults(func=run)


def _load(path: str):
    data = read_json_object(path)
    # accept a whole Scenario file too: its wireless part, as `run` would see it (one user per task,
    # the default uplink where the file leaves it out)
    if isinstance(data.get("tasks"), list):
        from ..experiment.scenario import Scenario

        return Scenario.parse(data).wireless
    if isinstance(data.get("wireless"), dict) and len(data) > 1 and "channel" not in data:
        data = data["wireless"]
    return data


def _clean(x):
    """JSON has no inf/nan: SINR of a silent user is -inf dB -> null."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_clean(v) for v in x]
    return x


def run(args: argparse.Namespace) -> int:
    from ..science.wireless import WirelessConfig, channel_warning, evaluate_uplink, monte_carlo

    cfg = WirelessConfig.parse(_load(args.scenario), field="wireless")
    if args.draws is not None and not 1 <= args.draws <= 1_000_000:
        raise InputError("draws", f"must be in 1..1000000 (got {args.draws})")
    result = evaluate_uplink(cfg)
    out = result.to_dict()
    warning = channel_warning(cfg, result)
    if warning:
        out["warnings"] = [warning]
    if args.draws:
        out["monte_carlo"] = monte_carlo(cfg, args.draws).to_dict()
    if args.json:
        print(json.dumps(_clean(out), allow_nan=False))
        return 0
    print(_table(out))
    return 0


def _fmt(x, spec):
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def _table(out: dict) -> str:
    lines = [
        f"attack {out['attack']}  Q={out['num_users']}  N_R={out['num_rx_antennas']}  "
        f"thermal {out['thermal_noise_w']:.3g} W/antenna  jammer {out['jammer_trace_w']:.3g} W of {out['jammer_power_w']:.3g} W",
        f"{'user':>4} {'SIC':>4} {'SINR dB':>9} {'rate nats':>10} {'bit/s/Hz':>9} {'MSE':>10}",
    ]
    for u in out["users"]:
        lines.append(
            f"{u['index']:>4} {u['sic_rank']:>4} {_fmt(u['sinr_db'], '9.2f')} {u['rate_nats']:>10.4f} "
            f"{u['rate_bits_per_hz']:>9.3f} {u['mse']:>10.3e}"
        )
    lines.append(f"sum rate {out['sum_rate_nats']:.4f} nats ({out['sum_rate_bits_per_hz']:.3f} bit/s/Hz), average MSE {out['average_mse']:.4g}")
    if out.get("solver"):
        s = out["solver"]
        lines.append(f"numeric solver: max user rate {s['max_user_rate_nats']:.4f} nats, certificate gap {s['certificate_gap_nats']:.2e} nats")
    mc = out.get("monte_carlo")
    if mc:
        avg = mc["average_mse"]
        lines.append(f"Monte Carlo over {mc['draws']} fading draws: average MSE mean {avg['mean']:.4g} (std {avg['std']:.3g}, p5 {avg['p5']:.3g}, p95 {avg['p95']:.3g})")
        lines.append(f"{'user':>4} {'MSE mean':>10} {'MSE p50':>10} {'SINR dB mean':>12}")
        for q, (m, med, s) in enumerate(zip(mc["users"]["mse"]["mean"], mc["users"]["mse"]["p50"], mc["users"]["sinr_db"]["mean"])):
            lines.append(f"{q:>4} {m:>10.3e} {med:>10.3e} {_fmt(s, '12.2f')}")
    lines += [f"warning: {w}" for w in out.get("warnings", [])]
    return "\n".join(lines)
