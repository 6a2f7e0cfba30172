"""A lab group's deployment with real processes (issue 18): PostgreSQL, one ``mlflow server``, two service replicas.

- ``mlflow server --backend-store-uri postgresql+psycopg2://…/<db> --artifacts-destination DIR``, started as
  MLflow's docs say, on a database of its own; the campaign store is another database (both keep an
  ``alembic_version`` table, so they cannot share one: :func:`test_campaign_store_refuses_the_mlflow_database`).
- ``surrogate train`` from the command line, configured only by a ``surrogate.toml`` in its folder; ``predict``
  reads the champion from the server; the printed UI link is the server's.
- Two ``surrogate serve`` replicas on different ports share the server and the campaign store; clients run
  campaign rounds through both (suggest on one, observe on the other, every request retried on the other
  replica): each observation lands exactly once.
- Hot promotion: ``@champion`` moved to a new version while clients keep predicting; both replicas answer with
  it within 30 s and no request fails.

The tests with real processes are marked ``team`` (and ``postgres``, ``server``, ``slow``): with CI=true they must
run; without CI they skip, saying why, when PostgreSQL on 127.0.0.1:5432 is unreachable. The swap itself
(:class:`serving.champion.ModelHolder`) is also tested in-process, fast, at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from test_service_server import _free_port, _http, start_server, stop_server, wait_for_answer


def deployment(test):
    """The marks of a test with real processes: ``team``, ``postgres``, ``server``, ``slow``."""
    for mark in (pytest.mark.team, pytest.mark.postgres, pytest.mark.server, pytest.mark.slow):
        test = mark(test)
    return test


SURROGATE = str(Path(sys.executable).parent / "surrogate")
TOKEN = "team-token"
ADMIN_TOKEN = "team-admin-token"
POLL_S = 2
"""The replicas' ``champion_poll_s`` in this test."""
GOOD = {"buffer": "SiO2", "anneal_temp_c": 300.0, "test_temp_c": 25.0}
CLEAN_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "PYTHONPATH")


def _postgres_or_skip() -> str:
    from surrogate.storage import reachable_postgres_url

    url = reachable_postgres_url()
    if url is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but PostgreSQL on 127.0.0.1:5432 (database test) is unreachable")
        pytest.skip("PostgreSQL on 127.0.0.1:5432 (database test) is unreachable and CI is not set")
    return url


@contextlib.contextmanager
def fresh_database(admin_url: str, name: str) -> Iterator[str]:
    """A new, empty PostgreSQL database ``name`` (dropped afterwards); yields its URL."""
    import sqlalchemy

    from surrogate.storage import database_url

    engine = sqlalchemy.create_engine(database_url(admin_url), isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


def run(folder: Path, env: dict[str, str], *args: str, expect: int = 0) -> str:
    """``surrogate ARGS`` in a fresh process in ``folder``; its stdout (fails with stderr on another exit code)."""
    done = subprocess.run([SURROGATE, *args], cwd=folder, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == expect, f"surrogate {' '.join(args)} exited {done.returncode}:\n{done.stderr[-4000:]}"
    return done.stdout


@dataclass
class Team:
    folder: Path
    env: dict[str, str]
    mlflow_url: str
    mlflow_db: str
    campaigns_db: str
    artifacts: Path
    trained: dict
    replicas: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def team(tmp_path_factory) -> Iterator[Team]:
    """PostgreSQL databases, the MLflow server on one of them, and a champion trained from the CLI against it."""
    admin_url = _postgres_or_skip()
    tag = uuid.uuid4().hex[:8]
    folder = tmp_path_factory.mktemp("team")
    artifacts = folder / "mlflow-artifacts"
    with (
        fresh_database(admin_url, f"mlflow_team_{tag}") as mlflow_db,
        fresh_database(admin_url, f"campaigns_team_{tag}") as campaigns_db,
    ):
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV and not k.startswith("SURROGATE_")}
        env.update(OMP_NUM_THREADS="1", BENTOML_HOME=str(folder / "bentoml"), MLFLOW_DISABLE_TELEMETRY="true")
        # The server as MLflow's docs start it; SQLAlchemy 2.1 maps plain postgresql:// to psycopg 3 (not installed).
        backend = mlflow_db.replace("postgresql://", "postgresql+psycopg2://", 1)
        server_command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend]
        server_command += ["--artifacts-destination", str(artifacts), "--host", "127.0.0.1", "--port", str(port)]
        server_command += ["--workers", "1"]
        log = folder / "mlflow-server.log"
        server = start_server(server_command, env, folder, log)
        mlflow_url = f"http://127.0.0.1:{port}"
        try:
            wait_for_answer(f"{mlflow_url}/health", server, log, want=200)
            (folder / "surrogate.toml").write_text(
                f'tracking_uri = "{mlflow_url}"\noptuna_storage = "{campaigns_db}"\n'
                f'api_token = "{TOKEN}"\nadmin_token = "{ADMIN_TOKEN}"\nchampion_poll_s = {POLL_S}\n'
            )
            trained = json.loads(run(folder, env, "train", "--models", "physics", "--json"))
            yield Team(folder, env, mlflow_url, mlflow_db, campaigns_db, artifacts, trained)
        finally:
            stop_server(server)


@deployment
def test_train_register_and_predict_against_the_tracking_server(team: Team):
    model = team.trained["registered_model"]
    assert model["version"] == "1" and team.trained["tracking_uri"] == team.mlflow_url
    # artifacts went through the server to its destination, nothing into the CLI's folder
    assert any(team.artifacts.rglob("MLmodel")), "the model's files are not in --artifacts-destination"
    assert not (team.folder / "mlruns").exists()
    config = json.loads(run(team.folder, team.env, "config", "--json"))["settings"]
    assert config["tracking_uri"] == {
        **config["tracking_uri"],
        "value": team.mlflow_url,
        "source": "file surrogate.toml",
    }
    assert config["api_token"]["value"] == "****"

    design = ["--buffer", "SiO2", "--anneal-temp-c", "300", "--test-temp-c", "25"]
    answer = json.loads(run(team.folder, team.env, "predict", *design, "--json"))
    conductivity = answer["predictions"][0]["conductivity_s_cm"]
    assert 0 < conductivity["lower"] <= conductivity["mean"] <= conductivity["upper"]
    printed = run(team.folder, team.env, "ui")
    assert team.mlflow_url in printed


@deployment
def test_campaign_store_refuses_the_mlflow_database(team: Team):
    env = dict(team.env, SURROGATE_OPTUNA_STORAGE=team.mlflow_db)
    done = subprocess.run(
        [SURROGATE, "campaign", "list"], cwd=team.folder, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 2, done.stderr
    assert "MLflow tracking database" in done.stderr and "database of its own" in done.stderr
    import sqlalchemy

    from surrogate.storage import database_url

    engine = sqlalchemy.create_engine(database_url(team.mlflow_db))
    try:
        assert "studies" not in sqlalchemy.inspect(engine).get_table_names()  # nothing written into MLflow's DB
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def replicas(team: Team) -> Iterator[list[str]]:
    """Two ``surrogate serve`` replicas in the team's folder (same settings file: same server, same store)."""
    processes, urls = [], []
    try:
        for index in range(2):
            port = _free_port()
            log = team.folder / f"replica-{index}.log"
            command = [SURROGATE, "serve", "--port", str(port), "--workers", "1"]
            processes.append((start_server(command, team.env, team.folder, log), log))
            urls.append(f"http://127.0.0.1:{port}")
        for (process, log), url in zip(processes, urls, strict=True):
            wait_for_answer(f"{url}/readyz", process, log, want=200)
        yield urls
    finally:
        for process, _ in processes:
            stop_server(process)


def _suggest(url: str, campaign: str, client_id: str) -> list[dict]:
    status, body = _http(f"{url}/suggest", {"campaign": campaign, "n": 2, "client_id": client_id}, TOKEN)
    assert status == 200, body
    return body["suggestions"]


def _observe(url: str, campaign: str, suggestion: dict, value: float) -> dict:
    row = {k: suggestion[k] for k in ("trial", "buffer", "anneal_temp_c", "test_temp_c")}
    body = {"campaign": campaign, "observations": [row | {"conductivity_s_cm": value}]}
    status, answer = _http(f"{url}/observe", body, TOKEN)
    assert status == 200, answer
    return answer


@deployment
def test_two_replicas_share_the_champion_and_the_campaigns_exactly_once(team: Team, replicas: list[str]):
    first, second = replicas
    for url in replicas:
        status, info = _http(f"{url}/model_info")
        assert status == 200 and info["version"] == "1" and info["tracking_uri"] == team.mlflow_url
    status, created = _http(f"{first}/campaigns", {"name": "films", "objective": "conductivity"}, TOKEN)
    assert status == 201, created
    assert _http(f"{second}/campaigns", {"name": "films", "objective": "conductivity"}, TOKEN)[0] == 409

    acknowledged: list[int] = []
    for round_number in range(3):
        for robot, (asked, told) in enumerate(((first, second), (second, first))):
            client_id = f"robot-{robot}-round-{round_number}"
            batch = _suggest(asked, "films", client_id)
            assert _suggest(told, "films", client_id) == batch  # a retry on the other replica: the same batch
            for index, suggestion in enumerate(batch):
                value = 1e-5 * (1 + robot + index + round_number)
                answer = _observe(told, "films", suggestion, value)
                again = _observe(asked, "films", suggestion, value)  # the client retries on the other replica
                assert answer["trials"] == [suggestion["trial"]] and again["already_recorded"] == [suggestion["trial"]]
                acknowledged.append(suggestion["trial"])

    import optuna

    from surrogate.storage import get_storage

    study = optuna.load_study(study_name="films", storage=get_storage(team.campaigns_db))
    complete = [t.number for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))]
    assert sorted(complete) == sorted(acknowledged) and len(set(acknowledged)) == len(acknowledged) == 12
    status, campaign = _http(f"{second}/campaigns/films", token=TOKEN)
    assert status == 200 and campaign["observed"] == 12 and campaign["pending"] == 0


@deployment
def test_promotion_reaches_both_replicas_without_a_failed_request(team: Team, replicas: list[str]):
    import mlflow

    from surrogate.tracking import CHAMPION_ALIAS, REGISTERED_MODEL_NAME

    client = mlflow.MlflowClient(tracking_uri=team.mlflow_url, registry_uri=team.mlflow_url)
    current = client.get_model_version_by_alias(REGISTERED_MODEL_NAME, CHAMPION_ALIAS)
    # A new version of the same trained model (retraining would take minutes and prove nothing more about the swap).
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(team.mlflow_url)
    mlflow.set_registry_uri(team.mlflow_url)
    try:
        new = mlflow.register_model(current.source, REGISTERED_MODEL_NAME)
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])
    assert str(new.version) != str(current.version)

    answers: list[tuple[str, int, str | None]] = []
    stop = threading.Event()

    def keep_predicting(url: str) -> None:
        while not stop.is_set():
            status, body = _http(f"{url}/predict", {"designs": [GOOD]})
            answers.append((url, status, body["model"]["version"] if status == 200 else json.dumps(body)[:300]))

    threads = [threading.Thread(target=keep_predicting, args=(url,), daemon=True) for url in replicas]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1)
        client.set_registered_model_alias(REGISTERED_MODEL_NAME, CHAMPION_ALIAS, new.version)
        promoted = time.monotonic()
        seen: set[str] = set()
        while time.monotonic() - promoted < 30 and len(seen) < len(replicas):
            seen = {url for url, status, version in list(answers) if status == 200 and version == str(new.version)}
            time.sleep(0.5)
        time.sleep(1)  # a few answers after the swap
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    failed = [answer for answer in answers if answer[1] != 200]
    assert not failed, failed[:5]
    assert seen == set(replicas), f"not every replica answered with version {new.version} within 30 s"
    for url in replicas:  # every answer after the swap names the new version
        versions = [version for u, _, version in answers if u == url]
        switch = versions.index(str(new.version))
        assert set(versions[switch:]) == {str(new.version)} and set(versions[:switch]) <= {str(current.version)}

    for url in replicas:  # the header names the version too
        request = urllib.request.Request(
            f"{url}/predict", json.dumps({"designs": [GOOD]}).encode(), {"content-type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            assert response.headers["x-model-version"] == str(new.version)

    # POST /admin/reload: the admin token only; it reports the version in force
    assert _http(f"{replicas[0]}/admin/reload", {}, TOKEN)[0] == 401
    status, body = _http(f"{replicas[0]}/admin/reload", {}, ADMIN_TOKEN)
    assert status == 200 and body["version"] == str(new.version) and body["changed"] is False


# ------------------------------------------------------------------ the swap, in-process (fast)
class _Registry:
    """A stand-in registry: the version ``@champion`` names, and a record of the versions loaded."""

    def __init__(self) -> None:
        self.champion = "1"
        self.loaded: list[str | None] = []
        self.broken: set[str] = set()

    def load(self, version: str | None) -> tuple[object, dict]:
        version = version or self.champion
        if version in self.broken:
            raise RuntimeError(f"version {version} does not load")
        self.loaded.append(version)
        return f"model-{version}", {"version": version}


def _holder(registry: _Registry):
    from serving.champion import Loaded, ModelHolder

    return ModelHolder(
        load=registry.load,
        wrap=lambda model, info: Loaded(model=model, info=info, notice=None, batcher=None),
        champion_version=lambda: registry.champion,
    )


def test_holder_swaps_in_a_new_champion_whole_and_keeps_the_old_one_for_requests_in_flight():
    registry = _Registry()
    holder = _holder(registry)
    holder.load()
    in_flight = holder.current
    assert in_flight.version == "1" and holder.check() == {
        "version": "1",
        "previous": "1",
        "changed": False,
        "following": True,
    }
    registry.champion = "2"
    assert holder.check()["changed"] is True
    assert holder.current.version == "2" and holder.current.model == "model-2"
    assert in_flight.model == "model-1" and in_flight.info == {"version": "1"}  # untouched: answered as version 1
    assert registry.loaded == ["1", "2"]


def test_holder_keeps_the_current_model_when_the_new_one_fails_to_load():
    registry = _Registry()
    holder = _holder(registry)
    holder.load()
    registry.champion, registry.broken = "3", {"3"}
    with pytest.raises(RuntimeError, match="does not load"):
        holder.check()
    assert holder.current.version == "1"


def test_holder_with_a_fixed_model_never_swaps():
    from serving.champion import Loaded, ModelHolder

    holder = ModelHolder(
        load=lambda version: ("fixed", {"version": None, "model_uri": "runs:/abc/model"}),
        wrap=lambda model, info: Loaded(model=model, info=info, notice=None, batcher=None),
        champion_version=lambda: None,
    )
    holder.load()
    assert holder.check() == {"version": None, "previous": None, "changed": False, "following": False}


def test_holder_polls_in_a_thread_until_stopped():
    registry = _Registry()
    holder = _holder(registry)
    holder.load()
    holder.watch(0.05)
    try:
        registry.champion = "2"
        deadline = time.monotonic() + 30
        while holder.current.version != "2" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert holder.current.version == "2"
    finally:
        holder.stop()
