"""A new user's path, one fresh process per step, as a user types it (issue 17).

Declare a fifth buffer (Al2O3) and a bulk electrolyte (an LLZO pellet) in a materials file, validate a table
that uses them, train with the file, then, in processes that were never given the file: predict on the
command line and over HTTP (with ``material``), search, and run a campaign over the declared buffers.

Every command runs as ``.venv/bin/surrogate ...`` in a scratch folder that holds its own stores, so no step
can lean on state another step left in memory: what survives is what the model and the stores carry.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import store_env

SURROGATE = str(Path(sys.executable).parent / "surrogate")
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

MATERIALS_FILE = """\
buffers:
  - id: al2o3
    display_name: "Al2O3 (ALD coating)"
    aliases: [alumina, "Al2O3"]
    descriptors: {class: oxide, conducts_li: false, thickness_nm: 3, log10_ionic_s_cm: -8.0, electronic_insulator: true}
    source: "literature orders of magnitude; not measured"
    lab: {rate_30c: 0.27, retention_100: 0.75}
materials:
  - id: llzo_pellet
    display_name: "sintered LLZO pellet"
    aliases: [llzo]
    descriptors: {class: oxide, conducts_li: true, thickness_nm: 1000000, log10_ionic_s_cm: -3.5, electronic_insulator: true}
    source: "literature orders of magnitude; not measured"
    anneal_temp_c: [0, 1400]
    test_temp_c: [-100, 300]
"""


def _cells() -> pd.DataFrame:
    """examples/measurements.csv plus Al2O3 rate and cycling cells and LLZO-pellet conductivity rows.

    The new rows are made up for the test (a smooth law plus a little noise), labelled as such in ``source``.
    """
    rng = np.random.default_rng(3)
    base = pd.read_csv(EXAMPLES / "measurements.csv")
    rows = []
    for c_rate in (0.5, 1, 2, 5, 10, 20, 30):
        retention = 1.0 / (1.0 + (c_rate / 12.0) ** 1.1) * float(np.exp(rng.normal(0, 0.01)))
        rows.append(
            {
                "experiment": "rate",
                "sample_id": "al-rate",
                "buffer": "Al2O3",
                "anneal_temp_c": 300.0,
                "test_temp_c": 25.0,
                "c_rate": c_rate,
                "rate_retention": round(retention, 4),
            }
        )
    for cycles in range(2, 101, 7):
        retention = float(np.exp(-0.003 * cycles)) * float(np.exp(rng.normal(0, 0.003)))
        rows.append(
            {
                "experiment": "cycling",
                "sample_id": "al-cycle",
                "buffer": "Al2O3",
                "anneal_temp_c": 300.0,
                "test_temp_c": 25.0,
                "c_rate": 0.1,
                "cycles": cycles,
                "protocol": "standard",
                "capacity_retention": round(min(retention, 1.0), 4),
            }
        )
    for anneal in (1100.0, 1200.0):
        for test_temp in (25.0, 40.0, 60.0, 80.0):
            kelvin = test_temp + 273.15
            sigma = 1e4 / kelvin * np.exp(-0.35 / (8.617e-5 * kelvin)) * (1.5 if anneal > 1150 else 1.0)
            rows.append(
                {
                    "experiment": "conductivity",
                    "sample_id": f"pellet-{anneal:g}",
                    "buffer": "none",
                    "material": "llzo_pellet",
                    "anneal_temp_c": anneal,
                    "test_temp_c": test_temp,
                    "conductivity_s_cm": float(f"{sigma * np.exp(rng.normal(0, 0.02)):.4g}"),
                }
            )
    new = pd.DataFrame(rows).assign(source="made up for the end-to-end test (not measured)")
    return pd.concat([base, new], ignore_index=True)


@pytest.fixture
def scratch(tmp_path) -> tuple[Path, dict[str, str]]:
    """A scratch folder with the table and the materials file, and an environment with its own stores."""
    (tmp_path / "my_materials.yaml").write_text(MATERIALS_FILE)
    _cells().to_csv(tmp_path / "my_cells.csv", index=False)
    env = {k: v for k, v in os.environ.items() if k != "SURROGATE_MATERIALS"}
    env.update(store_env(tmp_path), BENTOML_HOME=str(tmp_path / "bentoml"), OMP_NUM_THREADS="1")
    return tmp_path, env


def run(folder: Path, env: dict[str, str], *args: str, expect: int = 0, **extra_env: str) -> str:
    """``surrogate ARGS`` in a fresh process; its stdout (the test fails with stderr on another exit code)."""
    done = subprocess.run(
        [SURROGATE, *args], cwd=folder, env={**env, **extra_env}, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == expect, f"surrogate {' '.join(args)} exited {done.returncode}:\n{done.stderr[-4000:]}"
    return done.stdout


def _post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


@pytest.mark.slow
@pytest.mark.server
def test_declared_materials_survive_every_step_with_no_file(scratch) -> None:
    folder, env = scratch
    # validate: the table is refused without the file (unknown buffer), accepted with it
    run(folder, env, "data", "validate", "my_cells.csv", expect=2)
    report = json.loads(
        run(folder, env, "data", "validate", "my_cells.csv", "--materials", "my_materials.yaml", "--json")
    )
    assert report["ok"] and "al2o3" in report["buffers"]

    # train with the file (SURROGATE_MATERIALS, as docs/materials.md shows)
    trained = json.loads(
        run(
            folder,
            env,
            "train",
            "--data",
            "my_cells.csv",
            "--models",
            "physics,trees",
            "--json",
            SURROGATE_MATERIALS="my_materials.yaml",
        )
    )
    assert trained["registered_model"]["version"] == "1"

    # predict with no file: the model carries its catalogue entries
    design = ["--anneal-temp-c", "300", "--test-temp-c", "25", "--c-rate", "10", "--json"]
    for buffer in ("Al2O3", "SiO2"):
        answer = json.loads(run(folder, env, "predict", "--buffer", buffer, *design))["predictions"][0]
        assert answer["design"]["buffer"] == buffer.lower()
        assert 0 < answer["rate_retention"]["lower"] <= answer["rate_retention"]["mean"] <= 1
    pellet = ["predict", "--buffer", "none", "--anneal-temp-c", "1200", "--test-temp-c", "25", "--material", "llzo"]
    answer = json.loads(run(folder, env, *pellet, "--json"))["predictions"][0]
    assert answer["design"]["material"] == "llzo_pellet"
    assert answer["conductivity_s_cm"]["mean"] > 1e-5  # the pellet's data, not the film's 1e-5 S/cm

    # search over the declared buffers, with no file: the model declares them
    (folder / "space.yaml").write_text("buffers: [sio2, al2o3]\ntest_temp_c: [25, 25]\nanneal_temp_c: [300, 300]\n")
    found = json.loads(
        run(
            folder,
            env,
            "search",
            "--objective",
            "rate_retention",
            "--c-rate",
            "10",
            "--space",
            "space.yaml",
            "--trials",
            "20",
            "--json",
        )
    )
    assert {d["buffer"] for d in found["designs"]} <= {"sio2", "al2o3"}

    # HTTP: a service given no file answers for the fifth buffer and the bulk material
    from test_service_server import _free_port, start_server, stop_server, wait_for_answer

    port = _free_port()
    process = start_server(
        [SURROGATE, "serve", "--port", str(port), "--workers", "1"], env, folder, folder / "server.log"
    )
    try:
        wait_for_answer(f"http://127.0.0.1:{port}/readyz", process, folder / "server.log", want=200)
        status, body = _post(
            f"http://127.0.0.1:{port}/predict",
            {
                "designs": [
                    {"buffer": "Al2O3", "anneal_temp_c": 300, "test_temp_c": 25, "c_rate": 10},
                    {"buffer": "SiO2", "anneal_temp_c": 300, "test_temp_c": 25, "c_rate": 10},
                    {"buffer": "none", "anneal_temp_c": 1200, "test_temp_c": 25, "material": "llzo_pellet"},
                ]
            },
        )
        assert status == 200, body
        al, sio2, bulk = body["predictions"]
        assert al["design"]["buffer"] == "al2o3" and sio2["design"]["buffer"] == "sio2"
        assert bulk["design"]["material"] == "llzo_pellet"
        assert bulk["conductivity_s_cm"]["mean"] == pytest.approx(answer["conductivity_s_cm"]["mean"], rel=1e-9)
        status, body = _post(
            f"http://127.0.0.1:{port}/predict",
            {"designs": [{"buffer": "none", "anneal_temp_c": 300, "test_temp_c": 25, "material": "unobtainium"}]},
        )
        assert status == 400 and "unobtainium" in json.dumps(body)
    finally:
        stop_server(process)


@pytest.mark.slow
def test_a_campaign_created_with_materials_suggests_the_fifth_buffer(scratch) -> None:
    folder, env = scratch
    run(
        folder,
        env,
        "train",
        "--data",
        "my_cells.csv",
        "--models",
        "physics",
        "--json",
        SURROGATE_MATERIALS="my_materials.yaml",
    )
    run(
        folder,
        env,
        "campaign",
        "create",
        "al",
        "--objective",
        "rate_retention",
        "--c-rate",
        "10",
        "--materials",
        "my_materials.yaml",
    )
    suggested = json.loads(run(folder, env, "campaign", "suggest", "al", "--n", "10", "--json"))
    assert "al2o3" in {s["buffer"] for s in suggested["suggestions"]}
