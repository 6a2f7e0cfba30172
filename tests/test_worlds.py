"""The world family: deterministic, world 0 is the lab, the reported worlds are in it, every law matters."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from surrogate.dataset import paper_design
from surrogate.design import CAPACITY_RETENTION, CONDUCTIVITY, RATE_RETENTION
from surrogate.errors import InputError
from surrogate.lab import VirtualLab
from surrogate.objectives import Objective
from surrogate.schema import SAMPLE_ID
from surrogate.worlds import FADE_ONSETS, RATE_LAWS, REPORTED_WORLDS, World, paper_world, world_family

TARGETS = (CONDUCTIVITY, RATE_RETENTION, CAPACITY_RETENTION)
RATE30_X_RETENTION100 = Objective("rate_x_capacity", c_rate=30.0, cycles=100)
RATE10_X_RETENTION300 = Objective("rate_x_capacity", c_rate=10.0, cycles=300)
COARSE = {"anneal_step_c": 5.0, "test_temp_step_c": 1.0}


def _paper_rows():
    design = paper_design()
    return design.assign(c_rate=design["c_rate"].fillna(0.1), cycles=design["cycles"].fillna(1))


def _location(optimum: dict) -> tuple:
    return optimum["buffer"], optimum["anneal_temp_c"], optimum["test_temp_c"]


def _moved(a: dict, b: dict) -> bool:
    """Whether two optima lie at different designs (beyond the coarse grid's resolution)."""
    return (
        a["buffer"] != b["buffer"]
        or abs(a["anneal_temp_c"] - b["anneal_temp_c"]) > 2 * COARSE["anneal_step_c"]
        or abs(a["test_temp_c"] - b["test_temp_c"]) > 2 * COARSE["test_temp_step_c"]
    )


def test_family_is_deterministic_and_extends():
    assert world_family(8, seed=0) == world_family(8, seed=0)
    assert world_family(10, seed=0)[:8] == world_family(8, seed=0)
    assert world_family(8, seed=1)[3:] != world_family(8, seed=0)[3:]
    names = [w.name for w in world_family(8)]
    assert len(set(names)) == len(names)


def test_family_starts_with_the_paper_and_the_reported_worlds():
    family = world_family(5)
    assert family[0] == paper_world() == World()
    assert family[0].laws() == World(name="x").laws()
    assert family[1:3] == list(REPORTED_WORLDS)
    with pytest.raises(InputError, match="n:"):
        world_family(2)


def test_random_worlds_stay_in_their_ranges_and_cover_every_shape():
    family = world_family(12, seed=3)
    drawn = family[3:]
    assert {w.rate_law for w in drawn[:3]} == set(RATE_LAWS)
    assert {w.fade_onset for w in drawn[:3]} == set(FADE_ONSETS)
    for world in drawn:
        assert 200.0 <= world.crystallisation_onset_c <= 420.0
        assert 0.1 <= world.interface_ea_ev <= 0.6 and 0.1 <= world.fade_ea_ev <= 0.6
        assert 0.5 <= world.noise_scale <= 2.0
    assert len({w.rate_ranking for w in drawn}) > 1 and len({w.fade_ranking for w in drawn}) > 1


def test_world_zero_is_the_lab():
    rows = _paper_rows()
    world = paper_world()
    lab = VirtualLab(noise=False)
    truth = world.measure_frame(rows, rng=None)
    expected = lab.measure_frame(rows)
    for target in TARGETS:
        np.testing.assert_allclose(truth[target], expected[target], rtol=1e-9)
    noisy = world.measure_frame(rows, np.random.default_rng(11), sample_ids=rows[SAMPLE_ID])
    lab_noisy = VirtualLab(seed=11).measure_frame(rows, sample_ids=rows[SAMPLE_ID])
    for target in TARGETS:
        np.testing.assert_allclose(noisy[target], lab_noisy[target], rtol=1e-9)
    design = {"buffer": "SiO2", "anneal_temp_c": 350.0, "test_temp_c": 60.0, "c_rate": 10.0, "cycles": 300}
    assert world.truth(design) == pytest.approx(VirtualLab(noise=False).truth(**design), rel=1e-9)


def test_measure_is_noisy_and_seeded_truth_is_not():
    world = world_family(6)[4]
    design = {"buffer": "lipon", "anneal_temp_c": 300.0, "test_temp_c": 40.0}
    first = world.measure(design, np.random.default_rng(5))
    assert first == world.measure(design, np.random.default_rng(5))
    assert first != world.measure(design, np.random.default_rng(6))
    assert world.truth(design) == world.truth(design)
    with pytest.raises(InputError, match="buffer"):
        world.truth({"buffer": "gold", "anneal_temp_c": 300.0, "test_temp_c": 40.0})
    with pytest.raises(InputError, match="anneal_temp_c"):
        world.truth({"buffer": "sio2", "anneal_temp_c": 900.0, "test_temp_c": 40.0})


def test_noise_scale_scales_the_spread():
    design = {"buffer": "sio2", "anneal_temp_c": 300.0, "test_temp_c": 40.0}
    rows = _paper_rows().iloc[:1].assign(buffer="sio2", c_rate=30.0, cycles=100).loc[[0] * 400].reset_index(drop=True)
    spreads = {}
    for scale in (0.5, 2.0):
        world = World(name=f"noise-{scale}", noise_scale=scale)
        measured = world.measure_frame(rows.assign(**design), np.random.default_rng(0))
        spreads[scale] = measured[RATE_RETENTION].std()
    assert spreads[2.0] == pytest.approx(4 * spreads[0.5], rel=0.15)


def test_reported_worlds_have_the_reported_optima():
    cryst250, hot_fade = REPORTED_WORLDS
    best = cryst250.optimum(RATE30_X_RETENTION100)
    assert (best["buffer"], best["anneal_temp_c"]) == ("lipon", 250.0)
    assert hot_fade.optimum(RATE10_X_RETENTION300)["test_temp_c"] == 25.0
    assert paper_world().optimum(RATE30_X_RETENTION100)["test_temp_c"] > 25.0


LAWS = (
    "crystallisation_onset_c",
    "rate_ranking",
    "fade_ranking",
    "interface_ea_ev",
    "fade_ea_ev",
    "rate_law",
    "fade_onset",
)


@pytest.mark.parametrize("law", LAWS)
def test_each_randomised_law_moves_the_optimum_in_some_world(law):
    """Changing only ``law`` of the paper's lab to its value in some world of the family moves the optimum."""
    paper = paper_world()
    baseline = {o: paper.optimum(o, **COARSE) for o in (RATE30_X_RETENTION100, RATE10_X_RETENTION300)}
    tried = []
    for world in world_family(9):
        value = getattr(world, law)
        if value == getattr(paper, law) or value in tried:
            continue
        tried.append(value)
        variant = dataclasses.replace(paper, name=f"only-{law}", **{law: value})
        if any(_moved(variant.optimum(o, **COARSE), baseline[o]) for o in baseline):
            return
    pytest.fail(f"no world's {law} ({tried}) moves the optimum of the paper's lab")


def test_world_rejects_laws_out_of_range():
    with pytest.raises(InputError, match="crystallisation_onset_c"):
        World(crystallisation_onset_c=150.0)
    with pytest.raises(InputError, match="rate_ranking"):
        World(rate_ranking=("sio2", "sio2", "none", "lipon"))
    with pytest.raises(InputError, match="rate_law"):
        World(rate_law="magic")
    with pytest.raises(InputError, match="fade_ea_ev"):
        World(fade_ea_ev=0.9)


def test_every_world_keeps_the_paper_numbers_in_its_own_ranking():
    """Calibration: each world's rate law meets its 30 C retentions and its fade its 100-cycle ones at 25 °C."""
    for world in world_family(9):
        for rank, buffer in enumerate(world.rate_ranking):
            value = world.truth({"buffer": buffer, "anneal_temp_c": 300.0, "test_temp_c": 25.0, "c_rate": 30.0})
            assert value[RATE_RETENTION] == pytest.approx((0.30, 0.22, 0.18, 0.10)[rank], abs=1e-9)
        for rank, buffer in enumerate(world.fade_ranking):
            value = world.truth({"buffer": buffer, "anneal_temp_c": 300.0, "test_temp_c": 25.0, "cycles": 100})
            assert value[CAPACITY_RETENTION] == pytest.approx((0.79, 0.76, 0.71, 0.54)[rank], abs=1e-9)


def test_paper_dataset_of_world_zero_is_the_embedded_data():
    from surrogate.dataset import DEFAULT_SEED, build_default_dataset
    from surrogate.worlds import paper_dataset

    expected = build_default_dataset(DEFAULT_SEED)
    got = paper_dataset(paper_world(), DEFAULT_SEED)
    assert list(got.columns) == list(expected.columns)
    for target in TARGETS:
        np.testing.assert_allclose(got[target].to_numpy(float), expected[target].to_numpy(float), rtol=1e-9)
    other = paper_dataset(REPORTED_WORLDS[0], DEFAULT_SEED)
    assert "cryst250-lipon" in other["source"].iloc[0]
    assert not np.allclose(
        other[RATE_RETENTION].to_numpy(float), expected[RATE_RETENTION].to_numpy(float), equal_nan=True
    )
