"""How often should a one-at-a-time campaign hedge with the model-free GP? A paired screen of HEDGE_EVERY.

The campaign (:class:`surrogate.campaign.Campaign`, through :func:`world_benchmark.run_method`, so exactly
the closed loop of the world-family benchmark) is run with :data:`surrogate.suggester.HEDGE_EVERY` set to
each value asked for, on the same worlds and paired seeds. A hedge every k-th design means: k = 2 every
other design is model-free; a value larger than the budget (1000) never hedges.

The default worlds are the paper's lab and three worlds where the campaign missed its target in a run of
the world-family benchmark (``hot-fade``, ``random-0-3``, ``random-0-7``): a knob that helps there but hurts
the paper's world, or the reverse, shows up side by side. Runs are split over ``--processes`` worker processes.

    python benchmarks/hedge_screen.py --hedge-every 2,4,1000 --seeds 0:8

Writes benchmarks/results/hedge_screen.{json,md}. Worlds are emulations, not measurements.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_WORLDS = "paper,hot-fade,random-0-3,random-0-7"


def one_run(hedge_every: int, world_name: str, objective_name: str, seed: int) -> dict:
    """One closed-loop campaign run with HEDGE_EVERY = ``hedge_every`` (set in this worker process)."""
    import warnings

    warnings.filterwarnings("ignore")
    import world_benchmark as wb

    from surrogate import suggester
    from surrogate.worlds import world_family

    suggester.HEDGE_EVERY = hedge_every
    world = next(w for w in world_family(wb.N_WORLDS, wb.FAMILY_SEED) if w.name == world_name)
    optimum = world.optimum(wb.objective_of(objective_name))["value"]
    started = time.perf_counter()
    run = wb.run_method("campaign", world, objective_name, seed, optimum)
    return {
        "hedge_every": hedge_every,
        "world": world_name,
        "objective": objective_name,
        "seed": seed,
        "hit": run["hit"],
        "recommended_regret": run.get("recommended_regret"),
        "seconds": round(time.perf_counter() - started, 2),
    }


def summarise(runs: list[dict], budget: int) -> dict:
    """Per setting and world: median experiments to the 2% band (failures count budget + 1), failures, mean."""
    out: dict = {}
    for setting in sorted({r["hedge_every"] for r in runs}):
        mine = [r for r in runs if r["hedge_every"] == setting]
        per_world = {}
        for world in dict.fromkeys(r["world"] for r in mine):
            hits = [r["hit"] or budget + 1 for r in mine if r["world"] == world]
            per_world[world] = {
                "median": statistics.median(hits),
                "mean": round(statistics.mean(hits), 2),
                "failures": sum(r["hit"] is None for r in mine if r["world"] == world),
                "median_recommended_regret": statistics.median(
                    r["recommended_regret"] for r in mine if r["world"] == world
                ),
                "runs": len(hits),
            }
        hits = [r["hit"] or budget + 1 for r in mine]
        out[str(setting)] = {
            "per_world": per_world,
            "overall": {
                "median": statistics.median(hits),
                "mean": round(statistics.mean(hits), 2),
                "failures": sum(r["hit"] is None for r in mine),
                "runs": len(hits),
            },
        }
    return out


def markdown(report: dict) -> str:
    summary = report["summary"]
    settings = list(summary)
    worlds = list(next(iter(summary.values()))["per_world"])
    lines = [
        "# Hedge screen: how often a one-at-a-time campaign asks the model-free GP",
        "",
        f"Date (UTC): {report['date_utc']}  ",
        f"Command: `{report['command']}`  ",
        f"Machine: {report['machine']}  ",
        f"Suggester: sha256 of surrogate/suggester.py {report['suggester_sha256'][:12]}…",
        "",
        f"Objective {report['objective']}; worlds {', '.join(worlds)}; seeds {report['seeds']} (paired: the same "
        f"noise stream for every setting); budget {report['budget']}. A cell is the median number of experiments "
        "until the best observed design is truly within 2% of the world's optimum (failures count "
        f"{report['budget'] + 1}), then the mean, then the runs that never got there. Worlds are emulations.",
        "",
        "| world | " + " | ".join(f"HEDGE_EVERY={s}" for s in settings) + " |",
        "|---|" + "---|" * len(settings),
    ]
    for world in [*worlds, "all"]:
        cells = []
        for s in settings:
            cell = summary[s]["overall"] if world == "all" else summary[s]["per_world"][world]
            cells.append(f"{cell['median']:g} / {cell['mean']:.1f} ({cell['failures']})")
        lines.append(f"| {world} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"HEDGE_EVERY={report['current']} is the value in surrogate/suggester.py when this ran. A value above the "
        "budget never hedges. Seeds are few: differences of a few experiments in one world are within the noise "
        "of the screen; the mean over all runs is the figure to compare.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hedge-every", default="2,4,1000", help="comma-separated HEDGE_EVERY values")
    parser.add_argument("--worlds", default=DEFAULT_WORLDS, help="comma-separated world names")
    parser.add_argument("--objective", default="rate30_x_retention100")
    parser.add_argument("--seeds", default="0:8", help="seed range a:b")
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()
    import world_benchmark as wb
    from tqdm import tqdm

    from surrogate import suggester
    from surrogate.worlds import world_family

    try:
        settings = [int(v) for v in args.hedge_every.split(",") if v]
        first, last = (int(x) for x in args.seeds.split(":"))
    except ValueError:
        raise SystemExit("--hedge-every: integers separated by commas; --seeds: a:b, two integers") from None
    if not settings or any(v < 1 for v in settings):
        raise SystemExit("--hedge-every: give one or more integers >= 1")
    if not 0 <= first < last:
        raise SystemExit(f"--seeds {args.seeds}: need 0 <= a < b")
    if args.processes < 1:
        raise SystemExit("--processes: at least 1")
    if args.objective not in wb.OBJECTIVES:
        raise SystemExit(f"--objective {args.objective!r}: choose from {', '.join(wb.OBJECTIVES)}")
    known = [w.name for w in world_family(wb.N_WORLDS, wb.FAMILY_SEED)]
    worlds = [w for w in args.worlds.split(",") if w]
    unknown = sorted(set(worlds) - set(known))
    if unknown or not worlds:
        raise SystemExit(f"--worlds: unknown {unknown or 'none given'}; choose from {', '.join(known)}")
    jobs = [
        (setting, world, args.objective, seed)
        for setting in settings
        for world in worlds
        for seed in range(first, last)
    ]
    load_start = os.getloadavg()
    with ProcessPoolExecutor(args.processes) as pool:
        futures = [pool.submit(one_run, *job) for job in jobs]
        runs = [f.result() for f in tqdm(futures, desc="campaign runs", file=sys.stderr)]
    report = {
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python " + " ".join(["benchmarks/hedge_screen.py", *sys.argv[1:]]),
        "machine": f"{platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} cores; load "
        f"average at start {[round(x, 2) for x in load_start]}, at end {[round(x, 2) for x in os.getloadavg()]}",
        "objective": args.objective,
        "seeds": args.seeds,
        "budget": wb.BUDGET,
        "current": suggester.HEDGE_EVERY,
        "suggester_sha256": wb.suggester_sha256(),
        "summary": summarise(runs, wb.BUDGET),
        "runs": runs,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "hedge_screen.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "hedge_screen.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
