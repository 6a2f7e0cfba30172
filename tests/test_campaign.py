"""Campaigns: create/suggest/observe/status round trip in the default SQLite storage, idempotency, all-or-nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from surrogate.campaign import Campaign, list_campaigns, read_observations
from surrogate.cli import main
from surrogate.design import DesignSpace
from surrogate.errors import InputError
from surrogate.lab import VirtualLab
from surrogate.objectives import Objective
from surrogate.suggester import MIN_SEPARATION

OBJECTIVE = Objective("rate_x_capacity", c_rate=10, cycles=300)


def _measure(suggestions, seed=0):
    lab = VirtualLab(seed=seed)
    rows = []
    for s in suggestions:
        d = s.design
        m = lab.measure(d["buffer"], d["anneal_temp_c"], d["test_temp_c"], c_rate=10, cycles=300)
        rows.append(d | {"rate_retention": m["rate_retention"], "capacity_retention": m["capacity_retention"]})
    return pd.DataFrame(rows)


def _trial_states(campaign):
    return [(t.number, t.state.name, t.value) for t in campaign.study.get_trials()]


def test_round_trip_default_sqlite_storage(tmp_stores):
    campaign = Campaign.create("lab-a", OBJECTIVE)
    assert (tmp_stores / "optuna.db").exists()
    first = campaign.suggest(4)
    assert {s.design["buffer"] for s in first} == set(DesignSpace().buffers)  # space-filling covers every buffer
    assert all(s.method == "space-filling" for s in first)
    outcome = campaign.observe(_measure(first))
    assert outcome["observed"] == 4 and sorted(outcome["trials"]) == [s.trial for s in first]
    # a second process sees the same state
    again = Campaign.load("lab-a")
    batch = again.suggest(3)
    assert all(s.method.startswith("qlognei-") for s in batch)  # chosen by the campaign's model, not space-filling
    for s in batch:
        assert not DesignSpace().violations(s.design)
    again.observe(_measure(batch, seed=1).assign(trial=[s.trial for s in batch]))
    status = Campaign.load("lab-a").status()
    assert status["observed"] == 7 and status["pending"] == 0
    best = status["best"]
    assert best["objective"] == pytest.approx(best["rate_retention"] * best["capacity_retention"])
    assert [c["name"] for c in list_campaigns()] == ["lab-a"]


def test_same_client_id_gets_same_pending_batch(tmp_stores):
    campaign = Campaign.create("lab-b", OBJECTIVE)
    a = campaign.suggest(2, client_id="robot-1")
    b = Campaign.load("lab-b").suggest(2, client_id="robot-1")
    assert [s.trial for s in a] == [s.trial for s in b]
    c = campaign.suggest(2, client_id="robot-2")
    assert {s.trial for s in c}.isdisjoint(s.trial for s in a)
    assert campaign.status()["pending"] == 4
    with pytest.raises(InputError, match="same n=2"):
        campaign.suggest(3, client_id="robot-1")
    assert campaign.status()["pending"] == 4


def test_batches_are_diverse(tmp_stores):
    campaign = Campaign.create("lab-c", OBJECTIVE, seed=3)
    campaign.observe(_measure(campaign.suggest(4)))
    batch = campaign.suggest(6)
    space = DesignSpace()
    designs = pd.DataFrame([s.design for s in batch])
    scaled = np.column_stack(
        [
            (designs["anneal_temp_c"] - space.anneal_temp_c[0]) / np.ptp(space.anneal_temp_c),
            (designs["test_temp_c"] - space.test_temp_c[0]) / np.ptp(space.test_temp_c),
        ]
    )
    for i in range(len(batch)):
        for j in range(i + 1, len(batch)):
            if designs["buffer"][i] == designs["buffer"][j]:
                assert np.linalg.norm(scaled[i] - scaled[j]) >= MIN_SEPARATION


def test_bad_observations_change_nothing(tmp_stores):
    campaign = Campaign.create("lab-d", OBJECTIVE)
    pending = campaign.suggest(2)
    before = _trial_states(campaign)
    good = _measure(pending)
    outside = good.copy()
    outside.loc[1, "anneal_temp_c"] = 900.0  # outside the space; row 1 is fine
    with pytest.raises(InputError, match="anneal_temp_c"):
        campaign.observe(outside)
    wrong_rate = good.assign(c_rate=20.0)
    with pytest.raises(InputError, match="c_rate"):
        campaign.observe(wrong_rate)
    with pytest.raises(InputError, match="trial"):
        campaign.observe(good.assign(trial=[99, 98]))
    assert _trial_states(Campaign.load("lab-d")) == before
    with pytest.raises(InputError, match="does not exist"):
        Campaign.load("no-such-campaign")
    (tmp_stores / "bad.csv").write_text("buffer,anneal_temp_c\nsio2,abc\n", encoding="utf-8")
    assert main(["campaign", "observe", "lab-d", str(tmp_stores / "bad.csv")]) == 2
    assert main(["campaign", "observe", "no-such-campaign", str(tmp_stores / "bad.csv")]) == 2
    assert _trial_states(Campaign.load("lab-d")) == before


def test_failed_experiment_is_recorded_and_avoided(tmp_stores):
    campaign = Campaign.create("lab-e", OBJECTIVE)
    pending = campaign.suggest(4)
    rows = _measure(pending[:3])
    failed = pd.DataFrame([pending[3].design | {"status": "failed", "reason": "cell shorted"}])
    outcome = campaign.observe(pd.concat([rows, failed], ignore_index=True))
    assert outcome == {
        "campaign": "lab-e",
        "observed": 3,
        "failed": 1,
        "trials": [s.trial for s in pending],
        "already_recorded": [],
        "recorded_by": None,
    }
    trial = campaign.study.get_trials()[pending[3].trial]
    assert trial.state.name == "FAIL" and trial.user_attrs["failure_reason"] == "cell shorted"
    assert campaign.status()["failed"] == 1


def test_failed_experiment_by_trial_number_alone(tmp_stores):
    campaign = Campaign.create("lab-f", OBJECTIVE)
    pending = campaign.suggest(2)
    outcome = campaign.observe(pd.DataFrame({"trial": [pending[0].trial], "status": ["failed"]}))
    assert outcome["failed"] == 1 and outcome["trials"] == [pending[0].trial]
    with pytest.raises(InputError, match="'buffer': missing"):
        campaign.observe(pd.DataFrame({"trial": [pending[1].trial]}))


def test_observing_the_same_results_twice_is_a_no_op(tmp_stores):
    campaign = Campaign.create("lab-g", OBJECTIVE)
    pending = campaign.suggest(3)
    with_trials = _measure(pending[:2]).assign(trial=[s.trial for s in pending[:2]])
    free = _measure(pending[2:], seed=5)
    assert campaign.observe(with_trials)["observed"] == 2
    assert campaign.observe(free)["observed"] == 1
    before = _trial_states(campaign)
    again = campaign.observe(pd.concat([with_trials, free], ignore_index=True))
    assert again["observed"] == 0 and again["already_recorded"] == sorted(s.trial for s in pending)
    assert _trial_states(campaign) == before
    changed = with_trials.iloc[:1].assign(rate_retention=with_trials["rate_retention"].iloc[0] / 2)
    with pytest.raises(InputError, match="already observed with another result"):
        campaign.observe(changed)
    assert _trial_states(campaign) == before


def test_cli_round_trip_with_file_and_warm_start(tmp_stores, capsys):
    assert (
        main(
            [
                "campaign",
                "create",
                "cli",
                "--objective",
                "rate_x_capacity",
                "--c-rate",
                "10",
                "--cycles",
                "300",
                "--warm-start",
                "embedded",
                "--json",
            ]
        )
        == 0
    )
    # one rate row per cell (4 buffers, at 10 C) plus 3 points (first, middle, last from 80 cycles) of 4 curves
    assert '"warm_start_rows": 16' in capsys.readouterr().out
    assert main(["campaign", "suggest", "cli", "--n", "2", "--json"]) == 0
    import json

    suggestions = json.loads(capsys.readouterr().out)["suggestions"]
    lab = VirtualLab(seed=5)
    rows = []
    for s in suggestions:
        m = lab.measure(s["buffer"], s["anneal_temp_c"], s["test_temp_c"], c_rate=10, cycles=300)
        rows.append(
            {k: s[k] for k in ("trial", "buffer", "anneal_temp_c", "test_temp_c", "c_rate", "cycles")}
            | {"rate_retention": m["rate_retention"], "capacity_retention": m["capacity_retention"]}
        )
    pd.DataFrame(rows).to_csv(tmp_stores / "results.csv", index=False)
    assert len(read_observations(tmp_stores / "results.csv")) == 2
    assert main(["campaign", "observe", "cli", str(tmp_stores / "results.csv"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["observed"] == 2
    assert main(["campaign", "status", "cli", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["observed"] == 2 and status["warm_start_rows"] == 16


def test_duplicate_campaign_name_is_an_input_error(tmp_stores):
    Campaign.create("dup", OBJECTIVE)
    with pytest.raises(InputError, match="already exists"):
        Campaign.create("dup", OBJECTIVE)


SAME_CLIENT_WORKER = textwrap.dedent(
    """
    import json, sys, time
    from surrogate.campaign import Campaign
    storage, name, start_at = sys.argv[1] or None, sys.argv[2], float(sys.argv[3])
    campaign = Campaign.load(name, storage=storage)
    time.sleep(max(0.0, start_at - time.time()))
    print(json.dumps([s.trial for s in campaign.suggest(2, client_id="robot-race")]))
    """
)


def concurrent_same_client_suggest(storage: str | None, name: str, workers: int = 3) -> list[list[int]]:
    """Trial numbers each of ``workers`` processes got from suggest(2, client_id="robot-race") at the same instant."""
    start_at = time.time() + 6.0  # after every process has imported and loaded the campaign
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", SAME_CLIENT_WORKER, storage or "", name, str(start_at)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(workers)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in processes]
    assert [p.returncode for p in processes] == [0] * workers
    return [json.loads(out.strip().splitlines()[-1]) for out in outputs]


@pytest.mark.slow
def test_simultaneous_suggest_with_one_new_client_id_creates_one_batch(tmp_stores):
    campaign = Campaign.create("race", OBJECTIVE)
    results = concurrent_same_client_suggest(None, "race")
    assert all(r == results[0] for r in results) and len(results[0]) == 2
    assert [s.trial for s in campaign.pending()] == results[0]


@pytest.mark.xfail(
    strict=False,
    reason="regression found on integration (issue 15): since capacity retention's model lost the undeclared "
    "anneal_temp_c input (surrogate/laws.py, as targets.py declares), this batch of 4 is all llto_ncm; the "
    "group-level (pooled) buffer prior, built since and the default, did not bring untried buffers back "
    "(checked with --runxfail at 2e0b16f: the batch is still all llto_ncm); open in issue 15",
)
def test_untried_buffers_are_suggested_when_they_could_win(tmp_stores):
    campaign = Campaign.create("explore", OBJECTIVE)
    rng = np.random.default_rng(1)
    designs = [
        {"buffer": b, "anneal_temp_c": float(rng.uniform(25, 500)), "test_temp_c": float(rng.uniform(25, 120))}
        for b in ("none", "llto_ncm")
        for _ in range(3)
    ]
    lab = VirtualLab(seed=3)
    rows = []
    for d in designs:
        m = lab.measure(**d, c_rate=10, cycles=300)
        rows.append(d | {"c_rate": 10, "cycles": 300} | {k: m[k] for k in ("rate_retention", "capacity_retention")})
    campaign.observe(pd.DataFrame(rows))
    batch = campaign.suggest(4)
    assert {"sio2", "lipon"} & {s.design["buffer"] for s in batch}


@pytest.mark.parametrize(
    "objective", [Objective("rate_retention", c_rate=30), Objective("capacity_retention", cycles=100)]
)
def test_single_target_objectives_are_modelled(tmp_stores, objective):
    campaign = Campaign.create("single", objective)
    lab = VirtualLab(seed=2)
    for _ in range(2):
        rows = []
        for s in campaign.suggest(3):
            d = s.design
            m = lab.measure(d["buffer"], d["anneal_temp_c"], d["test_temp_c"], c_rate=d["c_rate"], cycles=d["cycles"])
            rows.append(d | {t: m[t] for t in objective.targets} | {"trial": s.trial})
        campaign.observe(pd.DataFrame(rows))
    batch = campaign.suggest(2)
    # a batch of two: the physics-prior GP's pick, then the model-free hedge
    assert [s.method for s in batch] == ["qlognei-physics-gp", "qlognei-model-free-gp"]
    assert campaign.status()["observed"] == 6


def test_a_failed_creation_leaves_no_half_made_campaign(tmp_stores, monkeypatch):
    import surrogate.campaign as campaign_module
    from surrogate.dataset import load_default_dataset

    original = campaign_module._store_warm_start_studies

    def broken(*args, **kwargs):
        original(*args, **kwargs)  # the warm-start studies are written, then the creation fails
        raise RuntimeError("disk full")

    monkeypatch.setattr(campaign_module, "_store_warm_start_studies", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        Campaign.create("half", OBJECTIVE, warm_start=load_default_dataset())
    assert list_campaigns() == []
    monkeypatch.setattr(campaign_module, "_store_warm_start_studies", original)
    campaign = Campaign.create("half", OBJECTIVE, warm_start=load_default_dataset())  # the name is free again
    assert campaign.status()["warm_start_rows"] == 16


def test_status_reports_the_recommended_design_beside_the_best_reading(tmp_stores):
    campaign = Campaign.create("recommend", OBJECTIVE)
    prior = campaign.status()["recommended"]
    assert prior["extrapolation"] is True  # nothing measured yet: the physics prior's guess, flagged
    campaign.observe(_measure(campaign.suggest(4)))
    campaign.observe(_measure(campaign.suggest(2)))
    status = campaign.status()
    recommended = status["recommended"]
    assert status["best"] is not None and status["observed"] == 6
    assert recommended["lower"] <= recommended["mean"] <= recommended["upper"]
    assert recommended["level"] == 0.9
    assert not campaign.space.violations(recommended["design"])
    assert campaign.status(recommend=False)["recommended"] is None


def test_campaign_create_with_materials_puts_the_declared_buffers_into_the_space(tmp_stores, capsys):
    """Issue 17 item 2: `campaign create --materials FILE` campaigns over the declared buffers too (unless the
    space file lists its own), and the campaign carries them: a process that never read the file opens it and
    its first suggestions include the fifth buffer."""
    from surrogate.materials import CATALOGUE, DEFAULT_BUFFERS, buffer_ids

    materials = str(Path(__file__).resolve().parents[1] / "examples" / "materials.yaml")
    (tmp_stores / "space.yaml").write_text("buffers: [sio2, al2o3]\n")
    before = CATALOGUE.snapshot()
    try:
        command = ["campaign", "create", "al", "--objective", "rate_retention", "--c-rate", "10", "--json"]
        assert main([*command, "--materials", materials]) == 0
        assert json.loads(capsys.readouterr().out)["space"]["buffers"] == [*DEFAULT_BUFFERS, "al2o3", "linbo3"]
        command[2] = "own-space"
        assert main([*command, "--materials", materials, "--space", "space.yaml"]) == 0
        assert json.loads(capsys.readouterr().out)["space"]["buffers"] == ["sio2", "al2o3"]  # the file says
    finally:
        CATALOGUE.restore(before)  # as in a new process that was never given the file
    try:
        assert "al2o3" not in buffer_ids()
        suggested = Campaign.load("al").suggest(10)
        assert {"al2o3", "linbo3"} <= {s.design["buffer"] for s in suggested}
        assert Campaign.load("own-space").space.buffers == ("sio2", "al2o3")
    finally:
        CATALOGUE.restore(before)


def test_each_observation_records_who_sent_it_and_a_resend_stays_idempotent(tmp_stores):
    """Issue 18 item 4: every observation carries its sender, written with it; a resend (by anyone) writes nothing."""
    campaign = Campaign.create("senders", OBJECTIVE)
    first = campaign.suggest(3)
    rows = _measure(first).assign(trial=[s.trial for s in first])
    outcome = campaign.observe(rows.iloc[:2], recorded_by="  robot-1 ")
    assert outcome["recorded_by"] == "robot-1" and outcome["observed"] == 2
    failed = first[2].design | {"trial": first[2].trial, "status": "failed", "reason": "film cracked"}
    campaign.observe(pd.DataFrame([failed]), recorded_by="alice")
    before = _trial_states(campaign)
    again = campaign.observe(rows.iloc[:2], recorded_by="bob")  # the same results, sent again by someone else
    assert again["observed"] == 0 and again["already_recorded"] == [first[0].trial, first[1].trial]
    assert _trial_states(campaign) == before
    stored = {t.number: t.user_attrs for t in Campaign.load("senders").study.get_trials()}
    assert [stored[s.trial]["recorded_by"] for s in first] == ["robot-1", "robot-1", "alice"]  # the first sender
    observed = campaign.observations()
    assert list(observed["recorded_by"].dropna()) == ["robot-1", "robot-1"]
    assert campaign.status(recommend=False)["best"]["recorded_by"] == "robot-1"
    listed = Campaign.load("senders").recorded()
    assert [(e["trial"], e["status"], e["recorded_by"]) for e in listed] == [
        (first[0].trial, "observed", "robot-1"),
        (first[1].trial, "observed", "robot-1"),
        (first[2].trial, "failed", "alice"),
    ]
    assert listed[2]["reason"] == "film cracked" and listed[2]["objective"] is None
    assert all(e["observed_at"] for e in listed)
    unnamed = campaign.suggest(1)
    campaign.observe(_measure(unnamed))  # the library records no sender unless told
    assert Campaign.load("senders").recorded()[-1]["recorded_by"] is None


@pytest.mark.parametrize("bad", ["", "   ", "a\nb", "x" * 129, 7])
def test_a_bad_sender_is_an_input_error_and_nothing_is_written(tmp_stores, bad):
    campaign = Campaign.create("bad-sender", OBJECTIVE)
    suggestion = campaign.suggest(1)
    with pytest.raises(InputError, match="recorded_by"):
        campaign.observe(_measure(suggestion), recorded_by=bad)
    assert campaign.status(recommend=False)["pending"] == 1 and campaign.recorded() == []


def test_cli_observe_records_the_sender_default_the_os_user(tmp_stores, capsys, monkeypatch):
    import getpass

    monkeypatch.setattr(getpass, "getuser", lambda: "labuser")
    campaign = Campaign.create("cli-senders", OBJECTIVE)
    suggestions = campaign.suggest(2)
    for i, s in enumerate(suggestions):
        _measure([s]).assign(trial=s.trial).to_csv(tmp_stores / f"r{i}.csv", index=False)
    assert main(["campaign", "observe", "cli-senders", str(tmp_stores / "r0.csv"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["recorded_by"] == "labuser"
    command = ["campaign", "observe", "cli-senders", str(tmp_stores / "r1.csv"), "--recorded-by", "robot-7"]
    assert main(command) == 0
    assert "recorded by robot-7" in capsys.readouterr().out
    assert main(["campaign", "observations", "cli-senders", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["observations"]
    assert [e["recorded_by"] for e in listed] == ["labuser", "robot-7"]
    assert main(["campaign", "observations", "cli-senders"]) == 0
    assert "recorded by robot-7" in capsys.readouterr().out
    assert main(["campaign", "status", "cli-senders"]) == 0
    assert "recorded by" in capsys.readouterr().out
    assert main([*command[:4], "--recorded-by", " "]) == 2  # a blank sender: exit 2, nothing written
    assert "recorded_by: must not be empty" in capsys.readouterr().err
    assert len(Campaign.load("cli-senders").recorded()) == 2
