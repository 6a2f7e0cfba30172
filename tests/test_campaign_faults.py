"""Campaign faults, on SQLite and on PostgreSQL: racing observations, killed workers, interrupted batches,
hostile names and numbers, read-only commands. docs/reliability.md names these tests as the proof of what it
guarantees.

PostgreSQL: 127.0.0.1:5432, database ``test`` (trust auth). With CI=true the PostgreSQL cases must run; without
CI they are skipped when the server is unreachable.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import sqlalchemy

from surrogate.campaign import MAX_OBSERVATIONS_PER_CALL, Campaign, list_campaigns
from surrogate.cli import main
from surrogate.errors import ConflictError, InputError, NotFoundError
from surrogate.objectives import Objective

OBJECTIVE = Objective("rate_x_capacity", c_rate=10, cycles=300)
ROOT = Path(__file__).resolve().parents[1]


def _postgres_url() -> str | None:
    from surrogate.storage import reachable_postgres_url

    return reachable_postgres_url()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request, tmp_path, monkeypatch):
    """A storage URL (SQLite file under tmp_path, or the test PostgreSQL) and a fresh campaign name; cleans up."""
    monkeypatch.setenv("SURROGATE_HOME", str(tmp_path))
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'optuna.db'}", f"c-{uuid.uuid4().hex[:8]}"
        return
    url = _postgres_url()
    if url is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but PostgreSQL on 127.0.0.1:5432 (database test) is unreachable")
        pytest.skip("PostgreSQL on 127.0.0.1:5432 (database test) is unreachable and CI is not set")
    name = f"pytest-{uuid.uuid4().hex[:10]}"
    yield url, name
    from surrogate.storage import get_storage

    storage = get_storage(url)
    for study in (name, name + "-b"):
        with contextlib.suppress(KeyError):
            optuna.delete_study(study_name=study, storage=storage)


def _row(suggestion, rate: float, capacity: float) -> dict:
    return suggestion.design | {"trial": suggestion.trial, "rate_retention": rate, "capacity_retention": capacity}


def _states(campaign: Campaign) -> list[tuple[int, str, float | None, str | None]]:
    return [
        (t.number, t.state.name, t.value, t.user_attrs.get("measured"))
        for t in Campaign.load(campaign.name, campaign.storage).study.get_trials()
    ]


def _assert_consistent(campaign: Campaign, number: int) -> dict:
    """The stored trial's value is the product of its measured attributes (the objective), and both exist."""
    trial = Campaign.load(campaign.name, campaign.storage).study.get_trials()[number]
    assert trial.state == optuna.trial.TrialState.COMPLETE
    measured = json.loads(trial.user_attrs["measured"])
    assert trial.value == pytest.approx(measured["rate_retention"] * measured["capacity_retention"], rel=1e-12)
    return measured


# ----------------------------------------------------------------------------------------------- racing observes
def _race(url: str, name: str, rows: list[dict], monkeypatch) -> list[object]:
    """Observe each row from its own thread (own storage connection) at the same moment; outcomes or errors.

    Each call waits (up to 1.5 s) for the others when it matches its row to a pending suggestion, after it
    has read the campaign and before it writes. Code that reads and writes without a lock then always
    interleaves (every call reads the trial as pending, every call writes); code that reads and writes under
    the campaign's lock waits out the timeout alone while the other call waits for the lock.
    """
    barrier = threading.Barrier(len(rows))
    original = Campaign._match
    local = threading.local()

    def waiting(self, *args, **kwargs):
        if threading.current_thread().name.startswith("race-") and not getattr(local, "met", False):
            local.met = True
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait(timeout=1.5)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Campaign, "_match", waiting)
    out: list[object] = [None] * len(rows)

    def run(i: int) -> None:
        try:
            out[i] = Campaign.load(name, url).observe(pd.DataFrame([rows[i]]))
        except Exception as exc:  # noqa: BLE001 - the test inspects whatever came out
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,), name=f"race-{i}") for i in range(len(rows))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    monkeypatch.setattr(Campaign, "_match", original)
    return out


def test_racing_observes_with_different_values_give_one_success_and_one_conflict(store, monkeypatch):
    url, name = store
    campaign = Campaign.create(name, OBJECTIVE, storage=url)
    for _ in range(2):
        (suggestion,) = campaign.suggest(1)
        outcomes = _race(url, name, [_row(suggestion, 0.6, 0.5), _row(suggestion, 0.7, 0.5)], monkeypatch)
        ok = [o for o in outcomes if isinstance(o, dict)]
        conflicts = [o for o in outcomes if isinstance(o, ConflictError)]
        assert len(ok) == 1 and len(conflicts) == 1, outcomes
        assert ok[0]["trials"] == [suggestion.trial]
        assert conflicts[0].trial == suggestion.trial and f"suggestion {suggestion.trial}" in str(conflicts[0])
        measured = _assert_consistent(campaign, suggestion.trial)
        assert measured["rate_retention"] in (0.6, 0.7)


def test_racing_observes_with_identical_values_give_one_success_and_one_already_recorded(store, monkeypatch):
    url, name = store
    campaign = Campaign.create(name, OBJECTIVE, storage=url)
    for _ in range(2):
        (suggestion,) = campaign.suggest(1)
        row = _row(suggestion, 0.55, 0.45)
        outcomes = _race(url, name, [row, row], monkeypatch)
        assert all(isinstance(o, dict) for o in outcomes), outcomes
        assert sorted(o["observed"] for o in outcomes) == [0, 1]
        assert sorted(tuple(o["already_recorded"]) for o in outcomes) == [(), (suggestion.trial,)]
        _assert_consistent(campaign, suggestion.trial)
    assert campaign.status()["observed"] == 2


def test_failed_replicates_at_one_design_are_each_stored_and_a_resent_one_is_not(store):
    """Finding 6 of issue 18: another failed sample at the same design, or another reason, is a new experiment."""
    url, name = store
    campaign = Campaign.create(name, OBJECTIVE, storage=url)
    design = {"buffer": "sio2", "anneal_temp_c": 300.0, "test_temp_c": 25.0, "status": "failed"}
    first = design | {"sample_id": "film-1", "reason": "film cracked"}
    outcome = campaign.observe(pd.DataFrame([first]))
    assert outcome["failed"] == 1 and outcome["already_recorded"] == []
    replicates = [
        design | {"sample_id": "film-2", "reason": "cell shorted"},  # another sample, another reason
        design | {"sample_id": "film-3", "reason": "film cracked"},  # another sample, the same reason
        design | {"sample_id": "film-1", "reason": "delaminated on re-test"},  # the same sample, another reason
    ]
    for row in replicates:
        outcome = Campaign.load(name, url).observe(pd.DataFrame([row]))
        assert outcome["failed"] == 1 and outcome["already_recorded"] == [], (row, outcome)
    assert campaign.status(recommend=False)["failed"] == 4
    stored = [t for t in Campaign.load(name, url).study.get_trials() if t.state == optuna.trial.TrialState.FAIL]
    assert sorted((t.user_attrs["sample_id"], t.user_attrs["failure_reason"]) for t in stored) == sorted(
        (r["sample_id"], r["reason"]) for r in [first, *replicates]
    )
    # the same content sent again (a retried request, the same file observed twice) is idempotent
    again = Campaign.load(name, url).observe(pd.DataFrame([first, replicates[0]]))
    assert again["failed"] == 0 and again["trials"] == []
    assert sorted(again["already_recorded"]) == sorted(t.number for t in stored[:2])
    assert campaign.status(recommend=False)["failed"] == 4


RACE_WORKER = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path
    import optuna
    import pandas as pd
    from surrogate.campaign import Campaign
    from surrogate.errors import ConflictError
    url, name, row, folder, me = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), Path(sys.argv[4]), sys.argv[5]
    campaign = Campaign.load(name, url)
    original = Campaign._match
    met = []
    def waiting(self, *args, **kwargs):  # meet the other process after reading, before writing (at most 3 s)
        if not met:
            met.append(1)
            (folder / me).touch()
            deadline = time.time() + 3
            while len(list(folder.iterdir())) < 2 and time.time() < deadline:
                time.sleep(0.01)
        return original(self, *args, **kwargs)
    Campaign._match = waiting
    try:
        print(json.dumps(campaign.observe(pd.DataFrame([row]))))
    except ConflictError as exc:
        print(json.dumps({"conflict": exc.trial, "message": str(exc)}))
    """
)


def test_racing_observes_from_two_processes(store, tmp_path):
    url, name = store
    campaign = Campaign.create(name, OBJECTIVE, storage=url)
    outcomes = []
    for values in ([(0.61, 0.5), (0.71, 0.5)], [(0.52, 0.4), (0.52, 0.4)]):
        (suggestion,) = campaign.suggest(1)
        folder = tmp_path / uuid.uuid4().hex
        folder.mkdir()
        processes = [
            subprocess.Popen(
                [sys.executable, "-c", RACE_WORKER, url, name, json.dumps(_row(suggestion, *v)), str(folder), str(i)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i, v in enumerate(values)
        ]
        results = [p.communicate(timeout=180) for p in processes]
        assert [p.returncode for p in processes] == [0, 0], [err[-2000:] for _, err in results]
        outcomes.append([json.loads(out.strip().splitlines()[-1]) for out, _ in results])
        _assert_consistent(campaign, suggestion.trial)
    different, identical = outcomes
    assert sorted("conflict" in o for o in different) == [False, True], different
    assert sorted(o.get("observed") for o in identical) == [0, 1], identical


# ----------------------------------------------------------------------------------------------- leases
HOLDER = textwrap.dedent(
    """
    import sys, time
    from surrogate.campaign import Campaign
    url, name = sys.argv[1], sys.argv[2]
    campaign = Campaign.load(name, url)
    (suggestion,) = campaign.suggest(1, client_id="worker-1")
    with campaign.keep_alive([suggestion.trial], every_s=0.3):
        print(suggestion.trial, flush=True)
        time.sleep(600)
    """
)


def test_kill_9_of_a_worker_holding_a_suggestion_returns_it_to_the_pool_after_the_lease(store):
    url, name = store
    campaign = Campaign.create(name, OBJECTIVE, storage=url, lease_s=2.0)
    worker = subprocess.Popen([sys.executable, "-c", HOLDER, url, name], stdout=subprocess.PIPE, text=True)
    try:
        trial = int(worker.stdout.readline())
        time.sleep(3.0)  # longer than the lease: the worker's renewals keep the suggestion pending
        alive = campaign.status()
        assert alive["pending"] == 1 and alive["expired"] == 0
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=60)
    time.sleep(2.5)  # one lease after the last renewal
    status = campaign.status()  # reclaims
    assert status["pending"] == 0 and status["expired"] == 1 and status["failed"] == 0
    stored = Campaign.load(name, url).study.get_trials()[trial]
    assert stored.state == optuna.trial.TrialState.FAIL
    assert stored.user_attrs["lease_expired"] is True and "lease expired" in stored.user_attrs["failure_reason"]
    # the design is back in the pool: a new suggestion may cover it, and the expired trial is no failed experiment
    assert len(campaign.suggest(1)) == 1


def test_unanswered_suggestions_expire_and_a_late_answer_is_a_conflict(store):
    url, name = store
    campaign = Campaign.create(name, OBJECTIVE, storage=url, lease_s=600.0)
    batch = campaign.suggest(3, client_id="robot")
    assert all(s.lease_expires_at for s in batch)
    for s in batch:  # their lease ran out (set in the past, not waited for: the rest runs well inside 600 s)
        trial_id = campaign.storage.get_trial_id_from_study_id_trial_number(campaign.study_id, s.trial)
        campaign.storage.set_trial_user_attr(trial_id, "lease_expires_at", "2026-01-01T00:00:00.000+00:00")
    again = campaign.suggest(3, client_id="robot")  # the old batch expired: a new one, not the old one
    assert {s.trial for s in again}.isdisjoint(s.trial for s in batch)
    assert [s.trial for s in campaign.pending()] == [s.trial for s in again]  # fantasies: live leases only
    with pytest.raises(ConflictError, match="lease expired") as caught:
        campaign.observe(pd.DataFrame([_row(batch[0], 0.5, 0.5)]))
    assert caught.value.trial == batch[0].trial
    late = pd.DataFrame([_row(batch[0], 0.5, 0.5)]).drop(columns=["trial"])
    assert campaign.observe(late)["observed"] == 1  # without 'trial' the late result is kept as a new observation
    with pytest.raises(ConflictError, match="not a pending suggestion"):
        campaign.renew([batch[1].trial])
    assert [s.trial for s in campaign.renew(client_id="robot")] == [s.trial for s in again]


def test_optuna_heartbeat_reaping_leaves_campaign_suggestions_to_their_lease(store):
    """Optuna's fail_stale_trials (run by any study.optimize worker with a short grace period) must not fail a
    suggestion a lab holds for hours: campaign suggestions record no Optuna heartbeat; their lease decides."""
    from surrogate.storage import fail_stale_trials, get_storage

    url, name = store
    Campaign.create(name, OBJECTIVE, storage=url)
    (suggestion,) = Campaign.load(name, url).suggest(1)
    hasty = get_storage(url, heartbeat_interval=1, grace_period=1)
    time.sleep(2.2)
    assert fail_stale_trials(optuna.load_study(study_name=name, storage=hasty)) == []
    assert [s.trial for s in Campaign.load(name, url).pending()] == [suggestion.trial]


def test_lease_from_the_environment_and_its_checks(tmp_stores, monkeypatch):
    monkeypatch.setenv("SURROGATE_LEASE_S", "7200")
    campaign = Campaign.create("leased", OBJECTIVE)
    assert campaign.lease_s == 7200
    assert Campaign.create("own-lease", OBJECTIVE, lease_s=60).lease_s == 60
    for bad in ("-1", "nan", "1e300", "soon"):
        monkeypatch.setenv("SURROGATE_LEASE_S", bad)
        with pytest.raises(InputError, match="SURROGATE_LEASE_S"):
            campaign.suggest(1)
    with pytest.raises(InputError, match="lease_s"):
        Campaign.create("bad-lease", OBJECTIVE, lease_s=0)


def test_renew_from_the_cli(tmp_stores, capsys):
    Campaign.create("renewed", OBJECTIVE, lease_s=600)
    (suggestion,) = Campaign.load("renewed").suggest(1, client_id="bot")
    assert main(["campaign", "renew", "renewed", "--client-id", "bot", "--json"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)["renewed"]
    assert entry["trial"] == suggestion.trial and entry["lease_expires_at"] >= suggestion.lease_expires_at
    assert main(["campaign", "renew", "renewed", "--trial", "99"]) == 2
    assert "trial 99" in capsys.readouterr().err
    # several trials after one flag, as the README writes it
    first, second = Campaign.load("renewed").suggest(2, client_id="bot-2")
    assert main(["campaign", "renew", "renewed", "--trial", str(first.trial), str(second.trial), "--json"]) == 0
    assert {e["trial"] for e in json.loads(capsys.readouterr().out)["renewed"]} == {first.trial, second.trial}


# ----------------------------------------------------------------------------------------------- atomic batches
def _free_rows(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "buffer": rng.choice(["none", "llto_ncm", "sio2", "lipon"], n),
            "anneal_temp_c": rng.uniform(25, 500, n),
            "test_temp_c": rng.uniform(25, 120, n),
            "c_rate": 10.0,
            "cycles": 300,
            "rate_retention": rng.uniform(0.1, 0.9, n),
            "capacity_retention": rng.uniform(0.1, 0.9, n),
        }
    )


def test_a_batch_with_one_bad_row_writes_nothing(store):
    url, name = store
    campaign = Campaign.create(name, OBJECTIVE, storage=url)
    pending = campaign.suggest(2)
    rows = pd.concat([pd.DataFrame([_row(s, 0.5, 0.5) for s in pending]), _free_rows(30)], ignore_index=True).astype(
        {"trial": "object"}
    )
    rows.loc[17, "anneal_temp_c"] = 9000.0
    before = _states(campaign)
    with pytest.raises(InputError, match="row 18"):
        campaign.observe(rows)
    assert _states(campaign) == before


def test_a_batch_interrupted_mid_write_leaves_nothing(store, monkeypatch):
    """A database error after some rows were written (injected on the 3rd INSERT of a value) rolls back all."""
    url, name = store
    from surrogate import storage as storage_module

    monkeypatch.setattr(storage_module, "INSERT_CHUNK_ROWS", 4, raising=False)  # several statements per batch
    campaign = Campaign.create(name, OBJECTIVE, storage=url)
    pending = campaign.suggest(3)
    rows = pd.concat([pd.DataFrame([_row(s, 0.5, 0.4) for s in pending]), _free_rows(20)], ignore_index=True)
    before = _states(campaign)
    engine = campaign.storage.engine
    seen = []

    def fail_third_value_insert(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO TRIAL_VALUES"):
            seen.append(statement)
            if len(seen) == 3:
                raise RuntimeError("injected failure mid-batch")

    sqlalchemy.event.listen(engine, "before_cursor_execute", fail_third_value_insert)
    try:
        with pytest.raises(Exception, match="injected failure"):
            campaign.observe(rows)
    finally:
        sqlalchemy.event.remove(engine, "before_cursor_execute", fail_third_value_insert)
    assert len(seen) == 3
    assert _states(campaign) == before
    outcome = campaign.observe(rows)  # the same batch, retried, lands whole
    assert outcome["observed"] == 23 and outcome["trials"][:3] == [s.trial for s in pending]
    for number in outcome["trials"]:
        _assert_consistent(campaign, number)


def test_more_rows_than_the_limit_is_an_input_error_naming_it(tmp_stores, capsys):
    campaign = Campaign.create("big", OBJECTIVE)
    rows = _free_rows(MAX_OBSERVATIONS_PER_CALL + 1).assign(anneal_temp_c=9000.0)
    with pytest.raises(InputError, match="at most 10,000 rows"):
        campaign.observe(rows)
    rows.to_csv(tmp_stores / "big.csv", index=False)
    assert main(["campaign", "observe", "big", str(tmp_stores / "big.csv")]) == 2
    assert "10,000" in capsys.readouterr().err
    assert campaign.status()["observed"] == 0


# ----------------------------------------------------------------------------------------------- hostile input
@pytest.mark.parametrize("cycles", [-5, 0, 1e20, 10**30, float("inf"), "1e400"])
def test_extreme_cycles_are_input_errors_naming_row_and_field(tmp_stores, capsys, cycles):
    campaign = Campaign.create("cyc", OBJECTIVE)
    (suggestion,) = campaign.suggest(1)
    good = _row(suggestion, 0.5, 0.5) | {"c_rate": 10.0, "cycles": 300}
    bad = good | {"trial": None, "anneal_temp_c": 100.0, "cycles": cycles}
    with pytest.raises(InputError, match=r"row 2, column 'cycles'"):
        campaign.observe(pd.DataFrame([good, bad]))
    pd.DataFrame([good, bad]).to_csv(tmp_stores / "cycles.csv", index=False)
    assert main(["campaign", "observe", "cyc", str(tmp_stores / "cycles.csv")]) == 2
    err = capsys.readouterr().err
    assert "cycles" in err and "Traceback" not in err
    assert campaign.status()["observed"] == 0


HOSTILE_NAMES = ["a\x00b", "", " lead", "../../etc/passwd", "x" * 65, "a b", "naïve", "-dash", "semi;colon", "a\nb"]


@pytest.mark.parametrize("bad", HOSTILE_NAMES)
def test_odd_campaign_names_are_input_errors_before_any_storage_access(store, bad):
    url, _ = store
    for call in (
        lambda: Campaign.load(bad, url),
        lambda: Campaign.create(bad, OBJECTIVE, storage=url),
    ):
        with pytest.raises(InputError, match="campaign name") as caught:
            call()
        assert not isinstance(caught.value, NotFoundError)


def test_odd_names_on_the_cli_exit_2_without_traceback(tmp_stores, capsys):
    for bad in ("a\x01b", "../x", "x" * 65):
        assert main(["campaign", "status", bad]) == 2
        assert main(["campaign", "create", bad, "--objective", "conductivity"]) == 2
        err = capsys.readouterr().err
        assert "campaign name" in err and "Traceback" not in err
    assert not (tmp_stores / "optuna.db").exists()


def test_a_missing_campaign_is_not_found_without_listing_the_others(store):
    url, name = store
    Campaign.create(name, OBJECTIVE, storage=url)
    with pytest.raises(NotFoundError) as caught:
        Campaign.load(name + "-b", url)
    assert name + "'" not in str(caught.value).replace(f"'{name}-b'", "")
    assert "surrogate campaign list" in str(caught.value)


# ----------------------------------------------------------------------------------------------- read-only commands
def test_read_only_commands_create_no_store(tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"  # does not exist yet
    monkeypatch.setenv("SURROGATE_HOME", str(home))
    monkeypatch.delenv("SURROGATE_OPTUNA_STORAGE", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["campaign", "list"]) == 0
    assert "no campaigns" in capsys.readouterr().out
    assert main(["campaign", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"campaigns": []}
    assert main(["campaign", "status", "nope"]) == 2
    assert main(["campaign", "suggest", "nope", "--n", "2"]) == 2
    assert main(["campaign", "renew", "nope", "--client-id", "x"]) == 2
    (tmp_path / "obs.csv").write_text("buffer,anneal_temp_c,test_temp_c\nsio2,300,25\n", encoding="utf-8")
    assert main(["campaign", "observe", "nope", str(tmp_path / "obs.csv")]) == 2
    err = capsys.readouterr().err
    assert err.count("does not exist") == 4 and "Traceback" not in err
    assert not home.exists() and not list(tmp_path.rglob("*.db"))
    assert list_campaigns() == [] and not home.exists()


# ----------------------------------------------------------------------------------------------- dashboard and examples
def test_campaign_studies_are_labelled_for_the_dashboard(store):
    url, name = store
    campaign = Campaign.create(name, OBJECTIVE, storage=url)
    from surrogate.storage import get_storage

    study = optuna.load_study(study_name=name, storage=get_storage(url))
    assert study.user_attrs["kind"] == "surrogate-campaign"
    assert study.metric_names == [OBJECTIVE.name]
    (suggestion,) = campaign.suggest(1)
    campaign.observe(pd.DataFrame([_row(suggestion, 0.5, 0.6)]))
    trial = optuna.load_study(study_name=name, storage=get_storage(url)).trials[suggestion.trial]
    assert trial.value == pytest.approx(0.3) and trial.params["buffer"] == suggestion.design["buffer"]


def test_the_readme_example_observations_file_is_accepted(tmp_stores, capsys):
    assert (
        main(
            [
                "campaign",
                "create",
                "films",
                "--objective",
                "rate_x_capacity",
                "--c-rate",
                "10",
                "--cycles",
                "300",
                "--warm-start",
                "embedded",
            ]
        )
        == 0
    )
    capsys.readouterr()
    example = ROOT / "examples" / "observations.csv"
    assert main(["campaign", "observe", "films", str(example), "--json"]) == 0
    outcome = json.loads(capsys.readouterr().out)
    assert outcome["observed"] == 4 and outcome["failed"] == 1
    assert main(["campaign", "observe", "films", str(example), "--json"]) == 0  # again: nothing new
    assert json.loads(capsys.readouterr().out)["already_recorded"] == outcome["trials"]
    status = Campaign.load("films").status()
    assert status["observed"] == 4 and status["warm_start_rows"] == 16
    assert [c["name"] for c in list_campaigns()] == ["films"]


def test_warm_start_rows_are_visible_as_complete_trials_of_their_own_studies(tmp_stores):
    from surrogate.campaign import warm_start_study_name
    from surrogate.dataset import load_default_dataset
    from surrogate.storage import get_storage

    campaign = Campaign.create("warm", OBJECTIVE, warm_start=load_default_dataset(), warm_start_source="embedded")
    storage = get_storage()
    shown = 0
    for target in ("rate_retention", "capacity_retention"):
        study = optuna.load_study(study_name=warm_start_study_name("warm", target), storage=storage)
        assert study.user_attrs["warm_start_of"] == "warm" and study.metric_names == [target]
        trials = study.get_trials()
        assert trials and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
        assert all(t.user_attrs["source"] == "warm-start" for t in trials)
        shown += len(trials)
    warm_rows = pd.DataFrame(campaign.config["warm_start"]["rows"])
    assert shown == len(warm_rows) == 16
    rate = warm_rows[warm_rows["rate_retention"].notna()].sort_values(["buffer", "test_temp_c"])
    study = optuna.load_study(study_name=warm_start_study_name("warm", "rate_retention"), storage=storage)
    assert sorted(t.value for t in study.get_trials()) == sorted(rate["rate_retention"])
    status = campaign.status()  # the campaign's own counts are its observations only
    assert status["observed"] == 0 and status["best"] is None and status["warm_start_rows"] == 16
    assert campaign.study.get_trials() == []
    assert [c["name"] for c in list_campaigns()] == ["warm"]


# ----------------------------------------------------------------------------------------------- large stores
def _with_observations(campaign: Campaign, n: int) -> None:
    """Add ``n`` completed observations to ``campaign`` in one transaction (as many observe calls would)."""
    from surrogate.campaign import _distributions
    from surrogate.storage import write_trials

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


def test_listing_and_creating_campaigns_read_no_trials(store, monkeypatch):
    """Finding 5 of issue 18: `campaign list`, GET /campaigns and POST /campaigns never read the trials of a
    campaign (with 110k trials on PostgreSQL the listing took 83 s); the listing still counts them.

    The service's route bodies run on a stand-in for the service instance (one BentoML app per process only).
    """
    import types

    import serving.service as service
    from surrogate.storage import get_storage

    url, name = store
    campaign = Campaign.create(name, OBJECTIVE, storage=url)
    _with_observations(campaign, 3000)
    read: list[int] = []  # every study whose trials are read: all of Optuna's trial reads end in _get_trials
    original = optuna.storages.RDBStorage._get_trials

    def recording(self, study_id, *args, **kwargs):
        read.append(study_id)
        return original(self, study_id, *args, **kwargs)

    monkeypatch.setattr(optuna.storages.RDBStorage, "_get_trials", recording)
    expected = {"name": name, "objective": OBJECTIVE.name, "created": campaign.config["created"], "trials": 3000}
    assert {c["name"]: c for c in list_campaigns(url)}[name] == expected
    assert campaign.study_id not in read
    storage = get_storage(url)
    instance = types.SimpleNamespace(_storage=lambda: storage)
    listed = service.Surrogate.inner.campaign_list(instance)["campaigns"]
    assert {c["name"]: c for c in listed}[name] == expected
    create = service.Surrogate.inner.create_campaign.func
    options = {"c_rate": 10.0, "cycles": 300, "protocol": "standard", "space": None, "warm_start": None, "seed": 0}
    created = create(instance, name + "-b", "conductivity", test_temp_c=60.0, **options)
    assert created.status_code == 201, created.body
    assert json.loads(created.body)["campaign"] == name + "-b"
    again = create(instance, name, "conductivity", test_temp_c=60.0, **options)
    assert again.status_code == 409 and "already exists" in json.loads(again.body)["error"]
    assert campaign.study_id not in read


def test_suggest_observe_and_status_read_no_trial_list_from_optuna(store, monkeypatch):
    """Finding 4 of issue 18: a campaign reads its trials with surrogate.storage.read_trials, never with Optuna's
    get_trials (whose cached storage reads every trial of the study first, ~3.5 s at 2,000 observations); the
    leases, the idempotent client id and exactly-once observe behave as before."""
    url, name = store
    campaign = Campaign.create(name, OBJECTIVE, storage=url)
    _with_observations(campaign, 40)
    read: list[int] = []  # every study whose trials Optuna reads: all of its trial reads end in _get_trials
    original = optuna.storages.RDBStorage._get_trials

    def recording(self, study_id, *args, **kwargs):
        read.append(study_id)
        return original(self, study_id, *args, **kwargs)

    monkeypatch.setattr(optuna.storages.RDBStorage, "_get_trials", recording)
    campaign = Campaign.load(name, url)
    (first,) = campaign.suggest(1, client_id="robot-1")
    assert campaign.suggest(1, client_id="robot-1") == [first]  # a retry gets the same suggestion
    assert [s.trial for s in campaign.pending("robot-1")] == [first.trial] == [40]
    assert first.lease_expires_at is not None
    row = _row(first, 0.9, 0.95)
    assert campaign.observe(pd.DataFrame([row]))["observed"] == 1
    assert campaign.observe(pd.DataFrame([row]))["observed"] == 0  # the same result again: nothing written
    failed = first.design | {"status": "failed", "reason": "film cracked"}
    campaign.observe(pd.DataFrame([failed]))
    status = campaign.status(recommend=False)
    assert (status["observed"], status["failed"], status["pending"]) == (41, 1, 0)
    assert status["best"]["trial"] == 40 and status["best"]["objective"] == pytest.approx(0.9 * 0.95)
    observed = campaign.observations()
    assert len(observed) == 41 and observed["objective"].iloc[-1] == pytest.approx(0.9 * 0.95)
    assert campaign.study_id not in read
    monkeypatch.setattr(optuna.storages.RDBStorage, "_get_trials", original)
    optuna_view = {t.number: t for t in Campaign.load(name, url).study.get_trials()}
    assert list(observed["trial"]) == [n for n, t in optuna_view.items() if t.state.name == "COMPLETE"]
    assert list(observed["objective"]) == [t.value for t in optuna_view.values() if t.state.name == "COMPLETE"]


def test_read_trials_gives_what_optuna_gives(store):
    """read_trials: the number, state, params, user attributes, value and start time Optuna reads, per state."""
    from surrogate.storage import get_storage, read_trials

    url, name = store
    campaign = Campaign.create(name, OBJECTIVE, storage=url)
    _with_observations(campaign, 5)
    campaign.suggest(2, client_id="robot-2")
    storage = get_storage(url)
    expected = optuna.load_study(study_name=name, storage=storage).get_trials()
    states = (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.COMPLETE)
    for stored_storage in (storage, optuna.storages.InMemoryStorage()):
        if isinstance(stored_storage, optuna.storages.InMemoryStorage):  # the other path: get_all_trials
            optuna.copy_study(from_study_name=name, from_storage=storage, to_storage=stored_storage)
        study_id = stored_storage.get_study_id_from_name(name)
        got = read_trials(stored_storage, study_id, states, None)
        assert [(t.number, t.state, t.params, t.user_attrs, t.value) for t in got] == [
            (t.number, t.state, t.params, t.user_attrs, t.value) for t in expected
        ]
        if stored_storage is storage:
            assert [t.datetime_start for t in got] == [t.datetime_start for t in expected]
        only = read_trials(stored_storage, study_id, (optuna.trial.TrialState.RUNNING,), ("client_id",))
        assert [(t.number, t.user_attrs) for t in only] == [
            (5, {"client_id": "robot-2"}),
            (6, {"client_id": "robot-2"}),
        ]


def test_a_lock_held_too_long_is_a_busy_error_and_other_keys_are_free(store):
    """Finding 3 of issue 18: a waiter gives up after its wait with BusyError (HTTP 503), on every storage."""
    from surrogate.errors import BusyError
    from surrogate.storage import exclusive, get_storage

    url, name = store
    storage = get_storage(url)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with exclusive(get_storage(url), f"test:{name}"):
            held.set()
            release.wait(timeout=60)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(timeout=60)
        with (
            pytest.raises(BusyError, match=f"campaign '{name}' is busy") as caught,
            exclusive(storage, f"test:{name}", wait_s=0.3, what=f"campaign {name!r}"),
        ):
            pytest.fail("entered a lock another thread holds")
        assert caught.value.retry_after_s > 0
        with exclusive(storage, f"test:{name}-other", wait_s=0.3):  # another campaign's lock is free
            pass
    finally:
        release.set()
        holder.join(timeout=60)
    with exclusive(storage, f"test:{name}", wait_s=5):  # released: taken again at once
        pass


def test_the_suggester_gets_a_capped_stratified_subsample_of_many_observations(store, monkeypatch):
    """Finding 4 of issue 18: suggest(1) cost grew with the observations (105 s and 4.5 GB at 10,000); the
    suggester now sees at most MAX_SUGGEST_OBSERVATIONS rows: the best ones and one of every design region."""
    import surrogate.campaign as campaign_module
    from surrogate.suggester import HEDGE_EVERY

    url, name = store
    campaign = Campaign.create(name, OBJECTIVE, storage=url)
    _with_observations(campaign, 1201)
    given: list[pd.DataFrame] = []
    real = campaign_module.propose_batch

    def recording(space, objective, observed, n, *args, **kwargs):
        given.append(observed)
        return pd.DataFrame(
            {"buffer": ["sio2"] * n, "anneal_temp_c": [300.0] * n, "test_temp_c": [25.0] * n, "method": ["x"] * n}
        )

    monkeypatch.setattr(campaign_module, "propose_batch", recording)
    (suggestion,) = campaign.suggest(1)
    everything = campaign.observations()
    (shown,) = given
    cap = campaign_module.MAX_SUGGEST_OBSERVATIONS
    assert len(everything) == 1201 and cap - HEDGE_EVERY < len(shown) <= cap
    assert shown["trial"].notna().sum() % HEDGE_EVERY == 1201 % HEDGE_EVERY  # the hedge cadence is kept
    best = everything.sort_values("objective", ascending=False)["trial"].head(cap // 5)
    assert set(best) <= set(shown["trial"])

    def regions(frame):
        bins = campaign_module.REGION_BINS
        return set(
            zip(
                frame["buffer"],
                np.minimum((frame["anneal_temp_c"] - 25.0) // (475.0 / bins), bins - 1),
                np.minimum((frame["test_temp_c"] - 25.0) // (95.0 / bins), bins - 1),
                strict=True,
            )
        )

    assert regions(shown) == regions(everything)  # every design region measured is in what the model sees
    assert suggestion.design["buffer"] == "sio2"
    small = everything.head(50)
    assert campaign_module.capped_observations(small, campaign.space) is small  # a small campaign: every row
    monkeypatch.setattr(campaign_module, "propose_batch", real)
