"""How long one campaign observe call of 10,000 rows takes, on SQLite and on PostgreSQL.

For each storage: a fresh campaign (rate 10 C x capacity retention after 300 cycles) with 50 pending
suggestions; one observe call of ``--rows`` rows (the 50 suggestions answered by trial number, the rest
unsolicited designs spread over the space) written in one transaction; then the same call again (every row
``already_recorded``, nothing written). For comparison, the per-trial Optuna API
(``storage.create_new_trial``, one transaction per row, as observe wrote before) on ``--per-trial-rows`` rows,
extrapolated to ``--rows``. Last, ``suggest(4)`` with no abandoned suggestions and with ``--abandoned``
suggestions whose lease has run out (they are reclaimed by that call).

Run::

    python benchmarks/campaign_observe.py                      # SQLite, plus PostgreSQL on 127.0.0.1:5432/test if reachable
    python benchmarks/campaign_observe.py --rows 2000 --quick   # smoke test

Writes benchmarks/results/campaign_observe.{json,md}. Timings depend on the machine; compare the ratios of
one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import uuid
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import optuna  # noqa: E402
import pandas as pd  # noqa: E402

from surrogate.campaign import Campaign  # noqa: E402
from surrogate.objectives import Objective  # noqa: E402
from surrogate.storage import get_storage, write_trials  # noqa: E402

OBJECTIVE = Objective("rate_x_capacity", c_rate=10, cycles=300)
BUFFERS = ("none", "llto_ncm", "sio2", "lipon")


def _postgres_url() -> str | None:
    from surrogate.storage import reachable_postgres_url

    return reachable_postgres_url()


def _rows(campaign: Campaign, n_rows: int, seed: int) -> pd.DataFrame:
    """``n_rows`` observation rows: every pending suggestion answered by number, then unsolicited designs."""
    rng = np.random.default_rng(seed)
    answered = [s.design | {"trial": s.trial} for s in campaign.pending()]
    n_free = n_rows - len(answered)
    free = pd.DataFrame(
        {
            "buffer": rng.choice(BUFFERS, n_free),
            "anneal_temp_c": rng.uniform(25, 500, n_free).round(1),
            "test_temp_c": rng.uniform(25, 120, n_free).round(1),
            "c_rate": 10.0,
            "cycles": 300,
        }
    )
    frame = pd.concat([pd.DataFrame(answered), free], ignore_index=True)
    frame["rate_retention"] = rng.uniform(0.05, 0.95, len(frame)).round(6)
    frame["capacity_retention"] = rng.uniform(0.05, 0.95, len(frame)).round(6)
    return frame


def _abandon(campaign: Campaign, n: int) -> None:
    """Add ``n`` suggestions whose lease ran out an hour ago (as a fuzzing run or dead workers leave them)."""
    dists = {
        "buffer": optuna.distributions.CategoricalDistribution(list(campaign.space.buffers)),
        "anneal_temp_c": optuna.distributions.FloatDistribution(*campaign.space.effective_anneal_temp_c),
        "test_temp_c": optuna.distributions.FloatDistribution(*campaign.space.effective_test_temp_c),
    }
    rng = np.random.default_rng(7)
    templates = [
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.RUNNING,
            params={
                "buffer": str(rng.choice(BUFFERS)),
                "anneal_temp_c": float(rng.uniform(25, 500)),
                "test_temp_c": float(rng.uniform(25, 120)),
            },
            distributions=dists,
            user_attrs={"batch": "abandoned", "lease_expires_at": "2000-01-01T00:00:00+00:00"},
        )
        for _ in range(n)
    ]
    write_trials(campaign.storage, campaign.study_id, new=templates)


def bench(label: str, url: str, n_rows: int, per_trial_rows: int, abandoned: int) -> dict:
    storage = get_storage(url)
    name = f"bench-{uuid.uuid4().hex[:8]}"
    try:
        campaign = Campaign.create(name, OBJECTIVE, storage=storage)
        campaign.suggest(50)
        frame = _rows(campaign, n_rows, seed=1)
        start = time.perf_counter()
        outcome = campaign.observe(frame)
        observe_s = time.perf_counter() - start
        assert outcome["observed"] == n_rows, outcome
        start = time.perf_counter()
        again = campaign.observe(frame)
        again_s = time.perf_counter() - start
        assert again["observed"] == 0 and len(again["already_recorded"]) == n_rows
        trials = campaign.study.get_trials(deepcopy=False)
        complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
        consistent = all(
            np.isclose(t.value, np.prod(list(json.loads(t.user_attrs["measured"]).values()))) for t in complete
        )

        # the per-trial Optuna API: one transaction per row
        dists = {
            "buffer": optuna.distributions.CategoricalDistribution(list(campaign.space.buffers)),
            "anneal_temp_c": optuna.distributions.FloatDistribution(*campaign.space.effective_anneal_temp_c),
            "test_temp_c": optuna.distributions.FloatDistribution(*campaign.space.effective_test_temp_c),
        }
        other = optuna.create_study(study_name=name + "-per-trial", storage=storage, direction="maximize")
        other_id = storage.get_study_id_from_name(other.study_name)
        start = time.perf_counter()
        for row in frame.head(per_trial_rows).to_dict("records"):
            storage.create_new_trial(
                other_id,
                template_trial=optuna.trial.create_trial(
                    value=row["rate_retention"] * row["capacity_retention"],
                    params={k: row[k] for k in dists},
                    distributions=dists,
                    user_attrs={"measured": json.dumps({"rate_retention": row["rate_retention"]})},
                ),
            )
        per_trial_s = (time.perf_counter() - start) / per_trial_rows * n_rows
        optuna.delete_study(study_name=other.study_name, storage=storage)

        # suggest with and without abandoned suggestions (a fresh campaign with 20 observations)
        small = Campaign.create(name + "-s", OBJECTIVE, storage=storage)
        small.observe(_rows(small, 20, seed=2))
        start = time.perf_counter()
        small.suggest(4)
        suggest_clean_s = time.perf_counter() - start
        _abandon(small, abandoned)
        start = time.perf_counter()
        small.suggest(4)
        suggest_reclaiming_s = time.perf_counter() - start
        start = time.perf_counter()
        small.suggest(4)
        suggest_after_s = time.perf_counter() - start
        status = small.status()
        assert status["expired"] == abandoned and status["pending"] == 12, status
        optuna.delete_study(study_name=small.name, storage=storage)
    finally:
        optuna.delete_study(study_name=name, storage=storage)
    return {
        "storage": label,
        "rows": n_rows,
        "observe_s": round(observe_s, 3),
        "rows_per_s": round(n_rows / observe_s),
        "observe_again_s": round(again_s, 3),
        "per_trial_api_s_extrapolated": round(per_trial_s, 2),
        "per_trial_api_rows_timed": per_trial_rows,
        "speedup_vs_per_trial": round(per_trial_s / observe_s, 1),
        "value_equals_measured_product": bool(consistent),
        "suggest4_s_no_abandoned": round(suggest_clean_s, 3),
        "suggest4_s_reclaiming_abandoned": round(suggest_reclaiming_s, 3),
        "suggest4_s_after_reclaim": round(suggest_after_s, 3),
        "abandoned": abandoned,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--per-trial-rows", type=int, default=300)
    parser.add_argument("--abandoned", type=int, default=300)
    parser.add_argument("--quick", action="store_true", help="smoke test: fewer rows, results not written")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.per_trial_rows, args.abandoned = min(args.rows, 2000), 50, 30
    results = []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder:
        results.append(bench("sqlite", f"sqlite:///{folder}/optuna.db", args.rows, args.per_trial_rows, args.abandoned))
    pg = _postgres_url()
    if pg:
        results.append(bench("postgresql", pg, args.rows, args.per_trial_rows, args.abandoned))
    for r in results:
        print(json.dumps(r))
    if args.quick:
        return
    command = "python benchmarks/campaign_observe.py"
    document = {
        "command": command,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "optuna": optuna.__version__,
        "load_average_1min": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "results": results,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "campaign_observe.json").write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    lines = [
        "# Campaign observe: one call of many rows",
        "",
        f"Command: `{command}`. Machine: {document['machine']}; Optuna {optuna.__version__}. Shared machine "
        f"(1-minute load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end): compare the "
        "ratios of one run.",
        "",
        "Each storage: a fresh campaign with 50 pending suggestions; one observe call answering them plus unsolicited "
        "rows (validation, matching and the write, in one transaction under the campaign lock); then the same call "
        "again (every row already recorded, nothing written). The per-trial column is Optuna's per-trial API (one "
        "transaction per row, how observe wrote before) timed on a few hundred rows and extrapolated.",
        "",
        "| storage | rows | observe (s) | rows/s | same call again (s) | per-trial API (s, extrapolated) | speed-up "
        "| value = product of measured |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['storage']} | {r['rows']:,} | {r['observe_s']:.2f} | {r['rows_per_s']:,} | {r['observe_again_s']:.2f} "
            f"| {r['per_trial_api_s_extrapolated']:.1f} | {r['speedup_vs_per_trial']:.0f}x "
            f"| {r['value_equals_measured_product']} |"
        )
    lines += [
        "",
        "Abandoned suggestions (a campaign with 20 observations, then suggestions whose leases have run out): the "
        "next call reclaims them once, and later calls cost what they cost without them, because pending "
        "fantasies are live leases only:",
        "",
        "| storage | abandoned | suggest(4) before (s) | suggest(4) that reclaims them (s) | suggest(4) after (s) |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['storage']} | {r['abandoned']} | {r['suggest4_s_no_abandoned']:.2f} "
            f"| {r['suggest4_s_reclaiming_abandoned']:.2f} | {r['suggest4_s_after_reclaim']:.2f} |"
        )
    if not pg:
        lines += ["", "PostgreSQL on 127.0.0.1:5432 (database test) was unreachable: not measured."]
    (RESULTS / "campaign_observe.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
