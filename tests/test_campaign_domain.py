"""The campaign's parts on their own: the storage-free core (suggest, recommend), observation matching in
memory, and the store's leases (expiry, reclaim, renew, keep_alive) without the facade."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from datetime import UTC, datetime

import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from surrogate.campaign import Campaign
from surrogate.campaign_core import CampaignCore, Recommender, distributions
from surrogate.campaign_store import CAMPAIGN_ATTR, CampaignStore, iso, parse_time
from surrogate.design import DesignSpace
from surrogate.errors import ConflictError, DataValidationError, InputError, NotFoundError
from surrogate.lab import VirtualLab
from surrogate.objectives import Objective
from surrogate.observations import ObservationChecker, ObservationMatcher
from surrogate.storage import StoredTrial

OBJECTIVE = Objective("rate_x_capacity", c_rate=10, cycles=300)
DESIGN = ["buffer", "anneal_temp_c", "test_temp_c"]


def _measured_rows(designs: list[dict], seed: int = 0, first_trial: int = 0) -> pd.DataFrame:
    """Observation rows (as :meth:`CampaignCore.observation_frame` makes them) of designs measured in the lab."""
    lab = VirtualLab(seed=seed)
    rows = []
    for i, d in enumerate(designs):
        design = {k: d[k] for k in DESIGN}
        m = lab.measure(**design, c_rate=10, cycles=300)
        values = {t: m[t] for t in OBJECTIVE.targets}
        objective = float(OBJECTIVE.value(values))
        rows.append(design | OBJECTIVE.conditions() | values | {"trial": first_trial + i, "objective": objective})
    return pd.DataFrame(rows)


def _trial(number: int, state: TrialState, design: dict, value: float | None = None, **attrs) -> StoredTrial:
    params = {k: design[k] for k in DESIGN}
    return StoredTrial(number, state, params, dict(attrs), value)


# ----------------------------------------------------------------------------------------------- the core
def test_the_core_and_the_observation_checks_import_no_storage():
    code = (
        "import sys, surrogate.campaign_core, surrogate.observations; "
        "print(sorted(m for m in ('surrogate.storage', 'surrogate.campaign_store', 'sqlalchemy') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert done.stdout.strip() == "[]", done.stdout


def test_the_core_fills_the_space_until_every_target_is_observed_and_continues_its_sequence():
    core = CampaignCore(DesignSpace(), OBJECTIVE, seed=5)
    first = core.next_designs(pd.DataFrame(), [], [], n_designs=0, n=5)
    assert list(first["method"]) == ["space-filling"] * 5
    assert all(not core.space.violations(d) for d in first[DESIGN].to_dict("records"))
    # the sequence goes on where the campaign's trials left it: designs 3 and 4 again
    later = core.next_designs(pd.DataFrame(), [{"buffer": "sio2", "anneal_temp_c": 1.0, "test_temp_c": 1.0}], [], 3, 2)
    pd.testing.assert_frame_equal(later[DESIGN], first[DESIGN].iloc[3:5].reset_index(drop=True))
    # one target observed is not enough to model a product objective
    rate_only = _measured_rows(first.to_dict("records")).drop(columns=["capacity_retention"])
    assert not core.modelled(rate_only)
    assert core.modelled(_measured_rows(first.to_dict("records")))
    with pytest.raises(InputError, match="n: 0"):
        core.next_designs(pd.DataFrame(), [], [], 0, 0)


def test_the_core_gives_the_model_the_observations_pending_and_failed_designs():
    calls = []

    def propose(space, objective, observed, n, pending, avoid, seed):
        calls.append((observed, n, pending, avoid, seed))
        return pd.DataFrame({"buffer": ["lipon"] * n, "anneal_temp_c": [250.0] * n, "test_temp_c": [40.0] * n}).assign(
            method=["qlognei-physics-gp"] * (n - 1) + ["qlognei-model-free-gp"]
        )

    def no_fill(*args, **kwargs):
        raise AssertionError("space-filling once every target is observed")

    core = CampaignCore(DesignSpace(), OBJECTIVE, seed=2, recommender=Recommender(no_fill, propose))
    fills = CampaignCore(DesignSpace(), OBJECTIVE, seed=2).next_designs(pd.DataFrame(), [], [], 0, 4)
    observed = _measured_rows(fills.to_dict("records"))
    pending = [{"buffer": "sio2", "anneal_temp_c": 300.0, "test_temp_c": 25.0, "c_rate": 10.0}]
    failed = [{"buffer": "none", "anneal_temp_c": 480.0, "test_temp_c": 90.0}]
    batch = core.next_designs(observed, pending, failed, n_designs=6, n=2)
    assert list(batch["method"]) == ["qlognei-physics-gp", "qlognei-model-free-gp"]
    ((shown, n, held, avoid, seed),) = calls
    assert n == 2 and seed == 2 + 6 and len(shown) == len(observed)
    assert held.to_dict("records") == [{k: pending[0][k] for k in DESIGN}]
    assert avoid.to_dict("records") == failed


def test_the_core_suggests_and_recommends_with_the_suggester_and_no_storage():
    """A closed loop in memory: four space-filling designs measured in the virtual lab, then a model's pick."""
    core = CampaignCore(DesignSpace(), OBJECTIVE, seed=1)
    prior = core.recommendation(core.observation_frame([]))
    assert prior["extrapolation"] and "prior" in prior["extrapolation_reasons"][0]
    fills = core.next_designs(core.observation_frame([]), [], [], 0, 4)
    observed = _measured_rows(fills.to_dict("records"), seed=1)
    (pick,) = core.next_designs(observed, [], [], 4, 1).to_dict("records")
    assert pick["method"].startswith("qlognei-") and not core.space.violations(pick)
    best = core.recommendation(observed)
    assert best["observations"] == 4 and best["lower"] <= best["mean"] <= best["upper"]
    assert not core.space.violations(best["design"]) and best["design"]["c_rate"] == 10.0


def test_the_core_reads_observations_recorded_experiments_and_the_best_from_trials():
    warm = [{"buffer": "sio2", "anneal_temp_c": 300.0, "test_temp_c": 25.0, "c_rate": 30.0, "rate_retention": 0.7}]
    core = CampaignCore(DesignSpace(), OBJECTIVE, warm_start=warm)
    design = {"buffer": "lipon", "anneal_temp_c": 200.0, "test_temp_c": 30.0}
    measured = json.dumps({"rate_retention": 0.5, "capacity_retention": 0.8})
    trials = [
        _trial(0, TrialState.COMPLETE, design, 0.4, measured=measured, recorded_by="robot-1"),
        _trial(1, TrialState.FAIL, design, failure_reason="cracked film"),
        _trial(2, TrialState.FAIL, design, lease_expired=True, failure_reason="lease expired"),
        _trial(3, TrialState.COMPLETE, design | {"anneal_temp_c": 250.0}, 0.6, measured=measured),
    ]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    frame = core.observation_frame(complete)
    assert list(frame["trial"].iloc[:2]) == [0, 3] and np.isnan(frame["trial"].iloc[2])
    assert frame["c_rate"].tolist() == [10.0, 10.0, 30.0]  # the warm row keeps its own C-rate
    assert frame["cycles"].tolist() == [300, 300, 300] and np.isnan(frame["capacity_retention"].iloc[2])
    recorded = core.recorded(trials)
    assert [(r["trial"], r["status"]) for r in recorded] == [(0, "observed"), (1, "failed"), (3, "observed")]
    assert recorded[1]["reason"] == "cracked film" and recorded[1]["objective"] is None
    assert recorded[0]["recorded_by"] == "robot-1" and recorded[0]["capacity_retention"] == 0.8
    best = core.best(complete)
    assert best["trial"] == 3 and best["objective"] == 0.6 and best["anneal_temp_c"] == 250.0
    assert core.best([]) is None


# ----------------------------------------------------------------------------------------------- observations
def test_observations_are_checked_and_matched_to_trials_in_memory():
    space = DesignSpace()
    core = CampaignCore(space, OBJECTIVE)
    checker = ObservationChecker(space, OBJECTIVE)
    matcher = ObservationMatcher(lambda t: core.design_of(t.params))
    design = {"buffer": "sio2", "anneal_temp_c": 300.0, "test_temp_c": 25.0}
    result = OBJECTIVE.conditions() | {"rate_retention": 0.6, "capacity_retention": 0.9}
    pending = _trial(4, TrialState.RUNNING, design)
    rows, problems = checker.prepare(pd.DataFrame([design | result]), "file")
    assert problems == [] and rows[0]["given"] is None
    records, already = matcher.resolve(rows, problems, "file", [pending])
    assert [r["trial"] for r in records] == [4] and already == []  # matched by design
    # the same result already recorded: nothing to write; another result for trial 4: a conflict
    values = json.dumps({"rate_retention": 0.6, "capacity_retention": 0.9})
    done = _trial(4, TrialState.COMPLETE, design, 0.54, measured=values, sample_id="")
    assert matcher.resolve(rows, problems, "file", [done]) == ([], [4])
    other, _ = checker.prepare(pd.DataFrame([design | result | {"trial": 4, "rate_retention": 0.5}]), "file")
    with pytest.raises(ConflictError, match="trial 4: suggestion 4 was already observed") as conflict:
        matcher.resolve(other, [], "file", [done])
    assert conflict.value.trial == 4
    # row problems: outside the space, the wrong C-rate, an unknown status; every one listed
    bad = pd.DataFrame(
        [design | result | {"anneal_temp_c": 900.0}, design | result | {"c_rate": 5}, design | {"status": "maybe"}]
    )
    rows, problems = checker.prepare(bad, "file")
    with pytest.raises(DataValidationError) as invalid:
        matcher.resolve(rows, problems, "file", [pending])
    where = {(p.row, p.column) for p in invalid.value.problems}
    assert {(1, "anneal_temp_c"), (2, "c_rate"), (3, "status")} <= where


# ----------------------------------------------------------------------------------------------- the store
def _suggest(store: CampaignStore, n: int, lease_s: float, client_id: str | None = None) -> list[int]:
    space, dists = DesignSpace(), distributions(DesignSpace(), OBJECTIVE)
    params = [{"buffer": space.buffers[i % len(space.buffers)], "anneal_temp_c": 100.0 + 50 * i} for i in range(n)]
    params = [p | {"test_temp_c": 25.0} for p in params]
    with store.locked():
        numbers, batch, expiry = store.add_suggestions(params, ["space-filling"] * n, client_id, dists, lease_s)
    assert len(batch) == 12 and parse_time(expiry) > datetime.now(UTC)
    return numbers


def _store(tmp_path, lease_s: float) -> CampaignStore:
    """A new campaign store in an SQLite file under ``tmp_path`` whose renewals extend leases by ``lease_s``."""
    config = {"format": 1, "lease_s": lease_s}
    return CampaignStore.create("leases", f"sqlite:///{tmp_path / 'optuna.db'}", OBJECTIVE.name, config)


def test_the_store_creates_loads_and_leaves_nothing_of_a_failed_creation(tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"

    def broken(storage):
        optuna.create_study(study_name="made:extra", storage=storage)
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        CampaignStore.create("made", url, OBJECTIVE.name, {"seed": 0}, setup=broken, leftovers=["made:extra"])
    assert optuna.get_all_study_names(url) == []
    CampaignStore.create("made", url, OBJECTIVE.name, {"seed": 3})
    loaded, config = CampaignStore.load("made", url)
    assert config == {"seed": 3} and loaded.study.user_attrs["kind"] == "surrogate-campaign"
    assert json.loads(loaded.study.user_attrs[CAMPAIGN_ATTR]) == config and loaded.study.metric_names == [
        OBJECTIVE.name
    ]
    with pytest.raises(ConflictError, match="already exists"):
        CampaignStore.create("made", url, OBJECTIVE.name, {})
    optuna.create_study(study_name="plain", storage=url)
    with pytest.raises(NotFoundError, match="not a campaign"):
        CampaignStore.load("plain", url)
    with pytest.raises(NotFoundError, match="does not exist"):
        CampaignStore.load("absent", url)


def test_the_store_reclaims_expired_leases_and_refuses_to_renew_them(tmp_path):
    store = _store(tmp_path, lease_s=30.0)
    short = _suggest(store, 2, lease_s=0.4, client_id="robot")
    (long,) = _suggest(store, 1, lease_s=30.0)
    assert not store.any_expired() and store.count() == 3
    time.sleep(0.6)
    assert store.any_expired()
    with store.locked():
        assert store.reclaim() == short
    states = {t.number: (t.state, t.user_attrs.get("lease_expired")) for t in store.trials((TrialState.FAIL,))}
    assert states == {short[0]: (TrialState.FAIL, True), short[1]: (TrialState.FAIL, True)}
    with pytest.raises(ConflictError, match=f"trial {short[0]}: not a pending suggestion") as lost:
        store.renew([short[0], long])
    assert lost.value.trial == short[0]
    before = store.lease_expiry(store.trials((TrialState.RUNNING,))[0])
    renewed, expiry = store.renew([long])
    assert [t.number for t in renewed] == [long]
    after = store.lease_expiry(store.trials((TrialState.RUNNING,))[0])
    assert iso(after) == expiry and after >= before
    assert store.renew(None, client_id="robot")[0] == []  # the robot's suggestions went back to the pool


def test_keep_alive_holds_a_suggestion_past_its_lease_and_stops_with_the_block(tmp_path):
    store = _store(tmp_path, lease_s=1.0)
    (number,) = _suggest(store, 1, lease_s=1.0)
    with store.keep_alive([number], every_s=0.1) as lost:
        time.sleep(2.5)  # more than twice the lease
        with store.locked():
            assert store.reclaim() == []
        assert not lost.is_set()
    time.sleep(1.5)  # no more renewals: the lease runs out
    with store.locked():
        assert store.reclaim() == [number]


def test_keep_alive_says_when_a_suggestion_was_lost(tmp_path):
    store = _store(tmp_path, lease_s=30.0)
    (number,) = _suggest(store, 1, lease_s=30.0)
    trial_id = store.storage.get_trial_id_from_study_id_trial_number(store.study_id, number)
    store.storage.set_trial_user_attr(trial_id, "lease_expires_at", "2026-01-01T00:00:00.000+00:00")
    with store.keep_alive([number], every_s=0.05) as lost:
        assert lost.wait(10.0)  # the first renewal reclaims the expired lease and finds nothing to renew
    assert [t.number for t in store.trials((TrialState.FAIL,))] == [number]


# ----------------------------------------------------------------------------------------------- facade = parts
def test_the_stored_campaign_suggests_what_its_core_suggests_for_the_same_state(tmp_path):
    campaign = Campaign.create("same", OBJECTIVE, storage=f"sqlite:///{tmp_path / 'optuna.db'}", seed=4)
    fills = campaign.suggest(4)
    rows = _measured_rows([s.design for s in fills], seed=4).drop(columns=["objective"])
    campaign.observe(rows.assign(trial=[s.trial for s in fills]))
    pending = campaign.suggest(1, client_id="a")
    core = CampaignCore(campaign.space, campaign.objective, seed=4)
    expected = core.next_designs(campaign.observations(), [s.design for s in pending], [], 5, 1)
    (stored,) = campaign.suggest(1, client_id="b")
    assert stored.method == expected["method"].iloc[0]
    (want,) = expected.to_dict("records")
    assert stored.design["buffer"] == want["buffer"]
    assert [stored.design[k] for k in DESIGN[1:]] == pytest.approx([want[k] for k in DESIGN[1:]])


# ----------------------------------------------------------------------------------------------- the space's axes
def test_the_design_space_axes_are_the_declared_parameters():
    from surrogate.design import SPACE_CHOICE, SPACE_RANGES
    from surrogate.parameters import CATEGORICAL_PARAMETERS, NUMERIC_PARAMETERS, value_problem

    assert SPACE_CHOICE is CATEGORICAL_PARAMETERS["buffer"]
    assert [axis.parameter for axis in SPACE_RANGES] == [
        NUMERIC_PARAMETERS[n] for n in ("anneal_temp_c", "test_temp_c")
    ]
    space = DesignSpace(max_anneal_temp_c=400.0, min_test_temp_c=30.0)
    assert [space.effective(axis.name) for axis in SPACE_RANGES] == [(25.0, 400.0), (30.0, 120.0)]
    assert DesignSpace().to_dict()["anneal_temp_c"] == list(SPACE_RANGES[0].default)
    # a bound is checked by the parameter's one validator, against the space's material
    why = value_problem("anneal_temp_c", 1350.0, material="llto_film")
    with pytest.raises(InputError, match=re.escape(f"anneal_temp_c: bound {why}")):
        DesignSpace(anneal_temp_c=(25.0, 1350.0))
    assert DesignSpace(anneal_temp_c=(25.0, 1350.0), material="llto_bulk").effective("anneal_temp_c") == (25.0, 1350.0)
    assert DesignSpace.from_dict(space.to_dict()) == space
