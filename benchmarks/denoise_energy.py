"""Where a receiver-side denoiser's loss on the ideal channel comes from (docs/arena.md): per preset, the
clean task vectors' energy, the error's energy the calibrated model puts on them, and what the
Frobenius-optimal spectral shrinker leaves: its weight-space error and the clean energy it discards.

    python benchmarks/denoise_energy.py [--presets paper_ideal,paper_worst_sum_rate] [--seed 0]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from where import print_header  # noqa: E402  (benchmarks/ is the script's own folder)

from rmtllmf_core.experiment import pipeline  # noqa: E402  (before torch, as the app and CLI import it)
from rmtllmf_core.experiment.presets import preset_scenario  # noqa: E402
from rmtllmf_core.science import denoise, perturb  # noqa: E402
from rmtllmf_core.science.wireless import evaluate_uplink  # noqa: E402

import torch  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--presets", default="paper_ideal,paper_worst_sum_rate")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print_header(None, probe=False)
    for preset in args.presets.split(","):
        s = preset_scenario(preset).replace(seed=args.seed)
        engine = pipeline.get_engine(s.zoo)
        layout = engine.layout
        mse = evaluate_uplink(s.wireless).mse
        std = perturb.tensor_noise_std(None, mse, layout, s.perturb.scale, s.perturb.symbol_gain_db)
        slices = engine.clean_slices(list(s.tasks))
        gen = torch.Generator().manual_seed(args.seed)
        clean = noise = shrunk_error = lost = 0.0
        for i, shape in enumerate(layout.shapes):
            x = slices(i).double()
            for r in range(x.shape[0]):
                sigma = float(std[r, i])
                received = x[r] + sigma * torch.randn(x.shape[1], generator=gen, dtype=torch.float64)
                out = denoise.denoise_tensor(received, shape, sigma, spectral="frobenius").double()
                energy = float(x[r].square().sum())
                clean += energy
                noise += x.shape[1] * sigma * sigma
                shrunk_error += float((out - x[r]).square().sum())
                kept = float(out.square().sum())
                lost += energy - (float(x[r] @ out) ** 2 / kept if kept > 0 else 0.0)
        print(f"{preset}, seed {args.seed}: clean energy {clean:.3g}, error energy {noise:.3g} "
              f"({noise / clean:.1f}x the clean), after spectral shrinkage the error is {shrunk_error:.3g} and "
              f"{100 * lost / clean:.0f}% of the clean energy is discarded")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
