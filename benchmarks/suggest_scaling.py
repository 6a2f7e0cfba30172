"""How one campaign ``suggest(1)`` scales with the number of observations: time and peak memory.

For each size: a fresh campaign (rate 10 C x capacity retention after 300 cycles, SQLite file) with that
many completed observations spread over the space (written as ``campaign observe`` writes them), then one
``suggest(1)`` in a fresh process, which reports its wall time and its peak resident memory. Two ways, in the
same run:

* capped (now): the suggester sees at most ``MAX_SUGGEST_OBSERVATIONS`` rows
  (:func:`surrogate.campaign.capped_observations`), and the campaign reads its trials with
  :func:`surrogate.storage.read_trials`;
* all rows (the baseline, as in ddca1da): the suggester sees every observation (the cap turned off);
* capped, Optuna reads (the baseline of the trial reads, as in 7ec7238): capped, but the campaign reads its
  trials with Optuna's ``study.get_trials`` (its cached storage reads every trial of the study first).

The goal of issue 18 is ``suggest(1)`` at 10,000 observations in at most 5 s and 1 GB. The baseline at 10,000
took 105 s and 4.5 GB in the probe, so by default it runs at the smaller sizes only (``--baseline-sizes``).

Run::

    python benchmarks/suggest_scaling.py
    python benchmarks/suggest_scaling.py --sizes 500 --baseline-sizes 500 --optuna-read-sizes 500 --quick

Writes benchmarks/results/suggest_scaling.{json,md}. Timings depend on the machine; compare the ratios of one
run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))

OBJECTIVE_ARGS = {"kind": "rate_x_capacity", "c_rate": 10, "cycles": 300}


def fill(url: str, n: int) -> None:
    """A campaign ``bench`` in ``url`` with ``n`` completed observations."""
    import optuna

    from surrogate.campaign import Campaign, _distributions
    from surrogate.objectives import Objective
    from surrogate.storage import write_trials

    campaign = Campaign.create("bench", Objective(**OBJECTIVE_ARGS), storage=url)
    dists = _distributions(campaign.space, campaign.objective)
    buffers = campaign.space.buffers
    trials = []
    for i in range(n):
        rate, capacity = 0.2 + 0.6 * ((i * 37) % 101) / 101, 0.5 + 0.4 * ((i * 13) % 97) / 97
        trials.append(
            optuna.trial.create_trial(
                value=rate * capacity,
                params={
                    "buffer": buffers[i % len(buffers)],
                    "anneal_temp_c": 25.0 + (i * 7) % 475,
                    "test_temp_c": 25.0 + (i * 3) % 95,
                },
                distributions=dists,
                user_attrs={
                    "observed_at": "2026-01-01T00:00:00+00:00",
                    "measured": json.dumps({"rate_retention": rate, "capacity_retention": capacity}),
                },
            )
        )
    write_trials(campaign.storage, campaign.study_id, new=trials)


WAYS = ("capped", "all rows", "capped, Optuna reads")


def child(url: str, way: str) -> None:
    """One suggest(1) in this process, one of :data:`WAYS`; prints seconds and peak RSS (MB) as JSON."""
    import surrogate.campaign as campaign_module

    if way == "all rows":  # the baseline: every observation goes to the suggester, as before the cap
        campaign_module.capped_observations = lambda observed, space, cap=0, seed=0: observed
    if way == "capped, Optuna reads":  # the baseline of the trial reads: Optuna's get_trials, as before
        campaign_module.Campaign._trials = lambda self, states: self.study.get_trials(deepcopy=False, states=states)
    campaign = campaign_module.Campaign.load("bench", url)
    start = time.perf_counter()
    (suggestion,) = campaign.suggest(1)
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak_mb, "method": suggestion.method}))


def measure(n: int, way: str, folder: Path) -> dict:
    url = f"sqlite:///{folder / f'bench-{n}-{WAYS.index(way)}.db'}"
    fill(url, n)
    done = subprocess.run(
        [sys.executable, __file__, "--child", url, "--way", way],
        capture_output=True,
        text=True,
        check=True,
        timeout=3600,
    )
    out = json.loads(done.stdout.strip().splitlines()[-1])
    return {"observations": n, "way": way} | out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 10000], help="observations (capped)")
    parser.add_argument("--baseline-sizes", type=int, nargs="*", default=[1000, 4000], help="sizes of all rows")
    parser.add_argument(
        "--optuna-read-sizes", type=int, nargs="*", default=[1000, 10000], help="sizes of capped, Optuna reads"
    )
    parser.add_argument("--quick", action="store_true", help="smoke test: results not written")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--way", choices=WAYS, default="capped", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.way)
        return
    from surrogate.campaign import MAX_SUGGEST_OBSERVATIONS

    load_start = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        sizes = dict(zip(WAYS, (args.sizes, args.baseline_sizes, args.optuna_read_sizes), strict=True))
        for n in sorted(set().union(*sizes.values())):
            for way in WAYS:
                if n in sizes[way]:
                    rows.append(measure(n, way, Path(tmp)))
                    print(json.dumps(rows[-1]), flush=True)
    import optuna

    result = {
        "command": "python benchmarks/suggest_scaling.py " + " ".join(sys.argv[1:]),
        "machine": {
            "platform": platform.machine(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "optuna": optuna.__version__,
            "load_average_start": round(load_start, 1),
            "load_average_end": round(os.getloadavg()[0], 1),
        },
        "cap": MAX_SUGGEST_OBSERVATIONS,
        "goal": "suggest(1) at 10,000 observations <= 5 s and <= 1 GB",
        "rows": rows,
    }
    if args.quick:
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "suggest_scaling.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    m = result["machine"]
    lines = [
        "# Campaign suggest(1) against the number of observations",
        "",
        f"Command: `{result['command'].strip()}`. Machine: {m['platform']}, {m['cores']} cores, Python "
        f"{m['python']}; Optuna {m['optuna']}. Shared machine (1-minute load average {m['load_average_start']} "
        f"at the start, {m['load_average_end']} at the end): compare the ratios of one run.",
        "",
        f"Each row: a fresh SQLite campaign with that many observations, one `suggest(1)` in a fresh process "
        f"(wall time of the call; peak resident memory of the process, imports included). *Capped*: the "
        f"suggester sees at most {MAX_SUGGEST_OBSERVATIONS} rows (a stratified subsample) and the campaign "
        "reads its trials with `surrogate.storage.read_trials`; *all rows*: the baseline of the cap, every "
        "observation (as in ddca1da); *capped, Optuna reads*: the baseline of the trial reads, Optuna's "
        "`study.get_trials` (as in 7ec7238).",
        "",
        "| observations | way | suggest(1) (s) | peak RSS (MB) | method |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['observations']:,} | {r['way']} | {r['seconds']:.2f} | {r['peak_rss_mb']:.0f} | {r['method']} |"
        for r in rows
    ]
    (RESULTS / "suggest_scaling.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
