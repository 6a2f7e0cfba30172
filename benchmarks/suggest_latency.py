"""Latency of campaign suggestions: ``suggest(8)`` on a campaign holding 50 observations (target: at most 2 s).

The campaign lives in a local SQLite file (the default storage); the observations are random designs
measured on the virtual lab (objective: rate retention at 10 C × capacity retention after 300 cycles).
Each ``suggest`` call fits the campaign's models (``physics_gp`` per target, physics and model-free),
screens the candidates and runs greedy qLogNEI; the earlier batches stay pending, so later calls also
carry pending designs. The first call of a process also imports torch and BoTorch; it is reported
separately from the median of the later calls. The machine load (1-minute average) is recorded with
the figures, because the machine is shared.

Run::

    python benchmarks/suggest_latency.py            # writes benchmarks/results/suggest_latency.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TARGET_S = 2.0
BUFFERS = ("none", "llto_ncm", "sio2", "lipon")


def measure(n_observed: int, n_suggest: int, repeats: int) -> dict:
    """Wall-clock seconds of ``repeats + 1`` calls of ``suggest(n_suggest)`` at ``n_observed`` observations."""
    import numpy as np
    import pandas as pd

    from surrogate.campaign import Campaign
    from surrogate.lab import VirtualLab
    from surrogate.objectives import Objective
    from surrogate.storage import get_storage

    objective = Objective("rate_x_capacity", c_rate=10.0, cycles=300)
    rng = np.random.default_rng(0)
    lab = VirtualLab(seed=0)
    rows = []
    for _ in range(n_observed):
        design = {
            "buffer": BUFFERS[rng.integers(4)],
            "anneal_temp_c": float(rng.uniform(25, 500)),
            "test_temp_c": float(rng.uniform(25, 120)),
        }
        m = lab.measure(**design, c_rate=10.0, cycles=300)
        rows.append(design | objective.conditions() | {k: m[k] for k in objective.targets})
    with tempfile.TemporaryDirectory() as folder:
        storage = get_storage(f"sqlite:///{os.path.join(folder, 'optuna.db')}")
        campaign = Campaign.create("latency", objective, storage=storage)
        campaign.observe(pd.DataFrame(rows))
        seconds = []
        for _ in range(repeats + 1):
            started = time.perf_counter()
            batch = campaign.suggest(n_suggest)
            seconds.append(time.perf_counter() - started)
            assert len(batch) == n_suggest
    return {
        "observations": n_observed,
        "suggestions": n_suggest,
        "first_call_s": round(seconds[0], 3),
        "median_later_call_s": round(float(np.median(seconds[1:])), 3),
        "max_later_call_s": round(float(np.max(seconds[1:])), 3),
        "calls_s": [round(x, 3) for x in seconds],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="later calls measured after the first (default 5)")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    cases = [measure(50, 8, args.repeats), measure(50, 1, args.repeats), measure(10, 8, args.repeats)]
    report = {
        "target_s": TARGET_S,
        "cases": cases,
        "cpu_count": os.cpu_count(),
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "unset"),
        "command": "python benchmarks/suggest_latency.py",
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "suggest_latency.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    main_case = cases[0]
    verdict = "meets" if main_case["max_later_call_s"] <= TARGET_S else "misses"
    lines = [
        "# Suggestion latency",
        "",
        f"Command: `{report['command']}`. Machine: {report['cpu_count']} cores, shared; 1-minute load average "
        f"{report['load_average_1min'][0]} before and {report['load_average_1min'][1]} after the run; "
        f"OMP_NUM_THREADS={report['omp_num_threads']} (the suggester runs single-threaded either way).",
        "",
        f"Target: `suggest(8)` on a campaign holding 50 observations in at most {TARGET_S:g} s. "
        f"Result: {verdict} it (slowest later call {main_case['max_later_call_s']} s).",
        "",
        "| observations | suggestions | first call of the process (s) | median later call (s) | slowest later call (s) |",
        "|---|---|---|---|---|",
    ]
    for case in cases:
        lines.append(
            f"| {case['observations']} | {case['suggestions']} | {case['first_call_s']} | "
            f"{case['median_later_call_s']} | {case['max_later_call_s']} |"
        )
    lines += [
        "",
        "The first call imports torch and BoTorch. Each call fits the campaign's `physics_gp` models (physics "
        "prior and, for the hedge, model-free), screens the candidates by marginal expected improvement and runs "
        "greedy qLogNEI (BoTorch) on the survivors; earlier batches stay pending and are part of each new "
        "call's baseline.",
        "",
    ]
    (RESULTS / "suggest_latency.md").write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
