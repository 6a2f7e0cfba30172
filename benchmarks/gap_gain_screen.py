"""How wide should intervals be between the anneal states that were made? A screen of GAP_GAIN.

For each world of :func:`surrogate.worlds.world_family`, the conductivity champion (families physics, gp and
trees, chosen by :func:`surrogate.evaluation.select_champions`) is trained on that world's version of the
paper's films (annealed at 25, 300 and 400 °C) and asked at held-out designs: half at the made anneal states,
half at anneal temperatures drawn uniformly over 25-400 °C, test temperatures 25-120 °C. For each value of
:data:`surrogate.models.features.GAP_GAIN` the 90% intervals are scored against fresh noisy films of that
world: coverage at the made states, coverage between them, and the mean width between them (decades).

    python benchmarks/gap_gain_screen.py --gains 0,0.5,1,2,4

Writes benchmarks/results/gap_gain_screen.{json,md}. Worlds are emulations, not measurements.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

RESULTS = Path(__file__).resolve().parent / "results"
LEVEL = 0.9
MADE, BETWEEN = "paper anneal states", "anneal between states"  # the groups of surrogate_accuracy.held_out_designs
sys.path.insert(0, str(Path(__file__).resolve().parent))


def designs(n: int, seed: int) -> pd.DataFrame:
    """The accuracy benchmark's held-out conductivity designs: half at the made anneal states, half in 25-400 °C."""
    from surrogate_accuracy import held_out_designs

    frame = held_out_designs(n, np.random.default_rng(seed))["conductivity_s_cm"].reset_index(drop=True)
    return frame.assign(buffer="none", c_rate=1.0, cycles=2, protocol="standard")


def screen(gains: list[float], n_worlds: int, n: int, seed: int) -> dict:
    """Coverage and width per world, gain and group (see the module docstring)."""
    from surrogate.dataset import DEFAULT_SEED
    from surrogate.evaluation import select_champions
    from surrogate.models import features
    from surrogate.schema import validate_frame
    from surrogate.worlds import paper_dataset, world_family

    frame = designs(n, seed)
    design = frame.drop(columns="group")
    out: dict = {}
    default = features.GAP_GAIN
    try:
        for world in world_family(n_worlds, 0):
            data = validate_frame(paper_dataset(world, DEFAULT_SEED), source=world.name)
            data = data[data["conductivity_s_cm"].notna()]
            selection = select_champions(data, ["physics", "gp", "trees"], LEVEL, progress=False, n_jobs=1)
            fresh = world.measure_frame(design, np.random.default_rng(seed + 1))["conductivity_s_cm"].to_numpy()
            rows = {}
            for gain in gains:
                features.GAP_GAIN = gain
                predicted = selection.surrogate.predict(design, level=LEVEL)
                lower = predicted["conductivity_s_cm_lower"].to_numpy()
                upper = predicted["conductivity_s_cm_upper"].to_numpy()
                inside = (fresh >= lower) & (fresh <= upper)
                width = np.log10(upper) - np.log10(lower)
                rows[str(gain)] = {
                    group: {
                        "coverage": float(inside[mask].mean()),
                        "mean_width_decades": float(width[mask].mean()),
                        "n": int(mask.sum()),
                    }
                    for group in (MADE, BETWEEN)
                    for mask in [(frame["group"] == group).to_numpy()]
                }
            out[world.name] = {"champion": selection.champions["conductivity_s_cm"], "gains": rows}
    finally:
        features.GAP_GAIN = default
    return out


def markdown(report: dict) -> str:
    lines = [
        "# GAP_GAIN screen: intervals between the anneal states that were made",
        "",
        f"Command: `{report['command']}`  ",
        f"GAP_GAIN in surrogate/models/features.py when this ran: {report['current']}",
        "",
        "Conductivity champion (physics, gp, trees) trained on each world's version of the paper's films (annealed "
        "at 25, 300 and 400 °C); 90% intervals scored against fresh noisy films of that world. A cell: coverage "
        "at the made states / coverage between them (mean width between them, decades). Worlds are emulations.",
        "",
        "| world | champion | " + " | ".join(f"GAP_GAIN={g}" for g in report["gains"]) + " |",
        "|---|---|" + "---|" * len(report["gains"]),
    ]
    for name, entry in report["worlds"].items():
        cells = []
        for gain in report["gains"]:
            made, between = entry["gains"][str(gain)][MADE], entry["gains"][str(gain)][BETWEEN]
            cells.append(f"{made['coverage']:.0%} / {between['coverage']:.0%} ({between['mean_width_decades']:.2f})")
        lines.append(f"| {name} | {entry['champion']} | " + " | ".join(cells) + " |")
    return "\n".join([*lines, ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gains", default="0,0.5,1,2,4", help="comma-separated GAP_GAIN values (>= 0)")
    parser.add_argument("--worlds", type=int, default=5, help="family size (>= 3)")
    parser.add_argument("--n", type=int, default=300, help="designs per world")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    from surrogate.models import features

    try:
        gains = [float(g) for g in args.gains.split(",") if g]
    except ValueError:
        raise SystemExit(f"--gains {args.gains!r}: numbers separated by commas") from None
    if not gains or any(not np.isfinite(g) or g < 0 for g in gains):
        raise SystemExit("--gains: give one or more finite numbers >= 0")
    if args.worlds < 3 or args.n < 2:
        raise SystemExit("--worlds: at least 3 (the paper's and the two reported worlds); --n: at least 2")
    report = {
        "command": "python " + " ".join(["benchmarks/gap_gain_screen.py", *sys.argv[1:]]),
        "current": features.GAP_GAIN,
        "gains": gains,
        "worlds": screen(gains, args.worlds, args.n, args.seed),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "gap_gain_screen.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "gap_gain_screen.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
