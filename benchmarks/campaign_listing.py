"""How long listing campaigns takes with many trials in the store, on PostgreSQL: now and the old way.

A fresh campaign (rate 10 C x capacity retention after 300 cycles) gets ``--trials`` completed observations
(written as ``campaign observe`` writes them: three params, the value, the ``measured``, ``observed_at`` and
``sample_id`` attributes), in transactions of 10,000 trials. Then, in the same run:

* now: :func:`surrogate.campaign.list_campaigns` (the studies, their user attributes and one COUNT of trials),
  what ``surrogate campaign list``, ``GET /campaigns`` and, before, ``POST /campaigns`` call; best of
  ``--repeats``;
* the old way (the baseline, kept here as it was in ddca1da): ``optuna.get_all_study_summaries``, which reads
  every trial of every study; once;
* creating one more campaign (``Campaign.create``, what ``POST /campaigns`` now does, with no listing first).

The goal of issue 18 is a listing of at most 1 s with 100k trials. The whole database ``test`` is listed, so
studies other runs left there count too (the number of studies and trials in it is reported).

Run::

    python benchmarks/campaign_listing.py                    # 100,000 trials on 127.0.0.1:5432/test
    python benchmarks/campaign_listing.py --trials 5000 --quick   # smoke test, results not written

Writes benchmarks/results/campaign_listing.{json,md}. Timings depend on the machine; compare the ratios of one
run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import uuid
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))

import optuna  # noqa: E402
import sqlalchemy  # noqa: E402

from surrogate.campaign import CAMPAIGN_ATTR, Campaign, _distributions, list_campaigns  # noqa: E402
from surrogate.objectives import Objective  # noqa: E402
from surrogate.storage import database_url, get_storage, reachable_postgres_url, write_trials  # noqa: E402

OBJECTIVE = Objective("rate_x_capacity", c_rate=10, cycles=300)
CHUNK = 10_000


def old_list_campaigns(storage: optuna.storages.BaseStorage) -> list[dict[str, Any]]:
    """The listing as it was in ddca1da (the baseline): every study's summary, which reads all its trials."""
    out = []
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        try:
            config = json.loads(summary.user_attrs.get(CAMPAIGN_ATTR))
            objective = Objective.from_dict(config["objective"]).name
        except Exception:  # not a campaign
            continue
        out.append(
            {
                "name": summary.study_name,
                "objective": objective,
                "created": config.get("created"),
                "trials": summary.n_trials,
            }
        )
    return out


def fill(campaign: Campaign, n_trials: int) -> float:
    """Write ``n_trials`` completed observations to ``campaign``; seconds taken."""
    dists = _distributions(campaign.space, campaign.objective)
    buffers = campaign.space.buffers
    start = time.perf_counter()
    for offset in range(0, n_trials, CHUNK):
        trials = []
        for i in range(offset, min(offset + CHUNK, n_trials)):
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
                        "sample_id": f"bench-{i}",
                    },
                )
            )
        write_trials(campaign.storage, campaign.study_id, new=trials)
    return time.perf_counter() - start


def store_size(url: str) -> tuple[int, int]:
    """Studies and trials in the whole database."""
    engine = sqlalchemy.create_engine(database_url(url))
    with engine.connect() as connection:
        studies = connection.execute(sqlalchemy.text("SELECT count(*) FROM studies")).scalar_one()
        trials = connection.execute(sqlalchemy.text("SELECT count(*) FROM trials")).scalar_one()
    engine.dispose()
    return int(studies), int(trials)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100_000, help="observations in the big campaign")
    parser.add_argument("--repeats", type=int, default=5, help="timings of the new listing (best and median)")
    parser.add_argument("--quick", action="store_true", help="smoke test: results not written")
    args = parser.parse_args()
    url = reachable_postgres_url()
    if url is None:
        raise SystemExit("PostgreSQL on 127.0.0.1:5432 (database test) is unreachable: this benchmark needs it")
    storage = get_storage(url)
    name = f"bench-listing-{uuid.uuid4().hex[:8]}"
    created_name = name + "-new"
    load_start = os.getloadavg()[0]
    campaign = Campaign.create(name, OBJECTIVE, storage=storage)
    fill_s = fill(campaign, args.trials)
    studies, trials = store_size(url)
    new_times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        listed = {c["name"]: c for c in list_campaigns(storage)}
        new_times.append(time.perf_counter() - start)
    assert listed[name]["trials"] == args.trials, listed[name]
    start = time.perf_counter()
    old = {c["name"]: c for c in old_list_campaigns(storage)}
    old_s = time.perf_counter() - start
    assert old[name] == listed[name], (old[name], listed[name])
    start = time.perf_counter()
    Campaign.create(created_name, OBJECTIVE, storage=storage)
    create_s = time.perf_counter() - start
    new_times.sort()
    result = {
        "command": "python benchmarks/campaign_listing.py"
        + (f" --trials {args.trials}" if args.trials != 100_000 else ""),
        "machine": {
            "platform": platform.machine(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "optuna": optuna.__version__,
            "load_average_start": round(load_start, 1),
            "load_average_end": round(os.getloadavg()[0], 1),
        },
        "storage": "postgresql (127.0.0.1:5432/test)",
        "campaign_trials": args.trials,
        "database_studies": studies,
        "database_trials": trials,
        "fill_s": round(fill_s, 2),
        "list_now_best_s": round(new_times[0], 4),
        "list_now_median_s": round(new_times[len(new_times) // 2], 4),
        "list_old_s": round(old_s, 2),
        "speed_up": round(old_s / new_times[len(new_times) // 2], 1),
        "create_now_s": round(create_s, 3),
        "goal_s": 1.0,
        "goal_met": new_times[len(new_times) // 2] <= 1.0,
    }
    print(json.dumps(result, indent=2), flush=True)
    if not args.quick:
        write(result, args)
    drop_studies(url, (name, created_name))


def drop_studies(url: str, names: tuple[str, ...]) -> None:
    """Delete the benchmark's studies with a few set-wise DELETEs in one transaction (``optuna.delete_study``
    deletes 100k trials row by row, which takes minutes under load). Optuna's schema cascades in the ORM, not
    in the database, so the child tables go first."""
    trial_tables = (
        "trial_params",
        "trial_values",
        "trial_user_attributes",
        "trial_system_attributes",
        "trial_intermediate_values",
        "trial_heartbeats",
    )
    study_tables = ("study_directions", "study_user_attributes", "study_system_attributes")
    engine = sqlalchemy.create_engine(database_url(url))
    with engine.begin() as connection:
        for name in names:
            study_id = connection.execute(
                sqlalchemy.text("SELECT study_id FROM studies WHERE study_name = :n"), {"n": name}
            ).scalar()
            if study_id is None:
                continue
            ids = "SELECT trial_id FROM trials WHERE study_id = :s"
            for table in trial_tables:
                connection.execute(sqlalchemy.text(f"DELETE FROM {table} WHERE trial_id IN ({ids})"), {"s": study_id})
            for table in ("trials", *study_tables, "studies"):
                connection.execute(sqlalchemy.text(f"DELETE FROM {table} WHERE study_id = :s"), {"s": study_id})
    engine.dispose()


def write(result: dict[str, Any], args: argparse.Namespace) -> None:
    """benchmarks/results/campaign_listing.{json,md}."""
    studies, trials = result["database_studies"], result["database_trials"]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "campaign_listing.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    m = result["machine"]
    (RESULTS / "campaign_listing.md").write_text(
        "# Listing campaigns with many trials in the store (PostgreSQL)\n\n"
        f"Command: `{result['command']}`. Machine: {m['platform']}, {m['cores']} cores, Python {m['python']}; "
        f"Optuna {m['optuna']}. Shared machine (1-minute load average {m['load_average_start']} at the start, "
        f"{m['load_average_end']} at the end): compare the ratios of one run.\n\n"
        f"One campaign with {args.trials:,} observations; the database held {studies:,} studies and {trials:,} "
        "trials in all when listed. *Now* is `list_campaigns` (studies, user attributes, one COUNT of trials; what "
        "`campaign list` and `GET /campaigns` call), median of "
        f"{args.repeats}; *old* is `optuna.get_all_study_summaries` as in ddca1da (reads every trial), once. "
        "`POST /campaigns` no longer lists first: it creates, and a taken name is a 409 from the create itself.\n\n"
        "| trials in the campaign | list now (s, median) | list now (s, best) | list the old way (s) | speed-up "
        "| create a campaign now (s) | goal ≤ 1 s met |\n|---|---|---|---|---|---|---|\n"
        f"| {args.trials:,} | {result['list_now_median_s']} | {result['list_now_best_s']} | {result['list_old_s']} "
        f"| {result['speed_up']}x | {result['create_now_s']} | {result['goal_met']} |\n",
        encoding="utf-8",
    )


if __name__ == "__main__":
    main()
