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
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from test_service_server import _alive, _children, _free_port, _http, start_server, stop_server, wait_for_answer


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
        fresh_database(admin_url, f"team_mlflow_{tag}") as mlflow_db,
        fresh_database(admin_url, f"team_campaigns_{tag}") as campaigns_db,
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


WORKERS_PER_REPLICA = 2
ROBOTS = 4
"""Clients of the full scenario, each with a write token of its own (``surrogate token add robot-N``)."""
ROUNDS = 20


class Replica:
    """One ``surrogate serve --workers 2`` in the team's folder, on a fixed port (so it can be killed and restarted)."""

    def __init__(self, team: Team, index: int) -> None:
        self.team, self.index, self.port = team, index, _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        """Start the replica (its log: ``replica-INDEX-START.log``); returns at once."""
        self.log = self.team.folder / f"replica-{self.index}-{self.starts}.log"
        command = [SURROGATE, "serve", "--port", str(self.port), "--workers", str(WORKERS_PER_REPLICA)]
        self.process = start_server(command, self.team.env, self.team.folder, self.log)
        self.starts += 1

    def wait_ready(self, limit_s: float = 240) -> None:
        """Until ``/readyz`` answers 200 (every worker has its model); fails naming the log after ``limit_s``."""
        assert self.process is not None
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"replica {self.index} exited {self.process.returncode}: {self.log.read_text()[-3000:]}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                if _http(f"{self.url}/readyz")[0] == 200:
                    return
            time.sleep(0.5)
        pytest.fail(f"replica {self.index} not ready after {limit_s:.0f} s: {self.log.read_text()[-3000:]}")

    def kill_9(self) -> None:
        """``kill -9`` of ``surrogate serve``; returns once its workers, which die with it
        (``test_service_server``'s kill test), are gone, as a supervisor restarts a dead service: a worker still
        dying could otherwise accept, then drop, connections meant for the restarted replica."""
        assert self.process is not None
        workers = _children(self.process.pid)
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=60)
        deadline = time.monotonic() + 120
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(pid) for pid in workers), f"workers {workers} outlived the killed replica"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            stop_server(self.process)


@pytest.fixture(scope="module")
def tokens(team: Team) -> dict[str, str]:
    """Tokens made with ``surrogate token add`` into the team folder's ``.surrogate/tokens.toml``: one write token
    per robot and a read token for a scientist (the settings file's ``api_token``/``admin_token`` stay valid)."""
    made = {}
    for name, role in [*((f"robot-{i}", "write") for i in range(ROBOTS)), ("scientist", "read")]:
        made[name] = json.loads(run(team.folder, team.env, "token", "add", name, "--role", role, "--json"))["token"]
    listed = json.loads(run(team.folder, team.env, "token", "list", "--json"))["tokens"]
    assert {row["name"]: row["role"] for row in listed} == {
        **{f"robot-{i}": "write" for i in range(ROBOTS)},
        "scientist": "read",
        "api_token": "write",
        "admin_token": "admin",
    }
    stored = (team.folder / ".surrogate" / "tokens.toml").read_text()
    assert not any(token in stored for token in made.values())  # digests only
    return made


@pytest.fixture(scope="module")
def replica_set(team: Team, tokens: dict[str, str]) -> Iterator[list[Replica]]:
    """Two replicas with 2 workers each, in the team's folder (same settings file: same server, same store)."""
    started = [Replica(team, index) for index in range(2)]
    try:
        for replica in started:
            replica.start()
        for replica in started:
            replica.wait_ready()
        yield started
    finally:
        for replica in started:
            replica.stop()


@pytest.fixture(scope="module")
def replicas(replica_set: list[Replica]) -> list[str]:
    """The replicas' URLs."""
    return [replica.url for replica in replica_set]


def _swapped(answers: list[tuple], url: str, version: str, last: int = 4) -> bool:
    """Whether the last ``last`` answers of ``url`` (``(url, status, version, ...)``) all came from ``version``
    (with 2 workers per replica, each worker swaps at its own poll)."""
    mine = [answer for answer in answers if answer[0] == url]
    return len(mine) >= last and all(answer[1] == 200 and answer[2] == version for answer in mine[-last:])


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
            seen = {url for url in replicas if _swapped(list(answers), url, str(new.version))}
            time.sleep(0.5)
        time.sleep(1)  # a few answers after the swap
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    failed = [answer for answer in answers if answer[1] != 200]
    assert not failed, failed[:5]
    assert seen == set(replicas), f"not every replica answered with version {new.version} within 30 s"
    for url in replicas:  # every answer names the old or the new version; once both workers swapped, only the new
        versions = [version for u, _, version in answers if u == url]
        assert set(versions) <= {str(current.version), str(new.version)}, versions
        assert versions[-1] == str(new.version)

    for url in replicas:  # the header names the version too
        request = urllib.request.Request(
            f"{url}/predict", json.dumps({"designs": [GOOD]}).encode(), {"content-type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            assert response.headers["x-model-version"] == str(new.version)

    # POST /admin/reload: the admin token only (the API token writes: 403 naming the role); it reports the version
    status, refused = _http(f"{replicas[0]}/admin/reload", {}, TOKEN)
    assert status == 403 and "needs role 'admin'" in refused["error"], refused
    assert _http(f"{replicas[0]}/admin/reload", {}, "not-a-token")[0] == 401
    status, body = _http(f"{replicas[0]}/admin/reload", {}, ADMIN_TOKEN)
    assert status == 200 and body["version"] == str(new.version) and body["changed"] is False


# ------------------------------------------------------------------ the full scenario (issue 18, "Done when")
_LOST = (urllib.error.URLError, ConnectionError, http.client.HTTPException)
"""What a client sees of a replica that is down or dies mid-request: refused, reset, or no answer at all."""


@dataclass
class Call:
    """One HTTP exchange of the scenario: who, where, what, and the answer (status None: connection lost)."""

    client: str
    url: str
    path: str
    status: int | None
    started: float
    body: dict | str | None = None


class Group:
    """The clients' view of the replicas: a list in preference order, and which are up (what a load balancer's
    health check would say). A lost connection is retried on the other replica; an HTTP answer is final."""

    def __init__(self, replicas: list[Replica]) -> None:
        self.replicas = replicas
        self.up = {replica.url: True for replica in replicas}
        self.calls: list[Call] = []
        self.lock = threading.Lock()

    def call(self, client: str, path: str, body: dict | None, token: str, prefer: int) -> Call:
        """``path`` on replica ``prefer`` (else the other), until an HTTP answer (at most 300 s of retries)."""
        deadline = time.monotonic() + 300
        attempt = 0
        while time.monotonic() < deadline:
            replica = self.replicas[(prefer + attempt) % len(self.replicas)]
            attempt += 1
            if not self.up[replica.url]:
                time.sleep(0.05)
                continue
            started = time.monotonic()
            try:
                status, answer = _http(f"{replica.url}{path}", body, token)
            except _LOST:
                with self.lock:
                    self.calls.append(Call(client, replica.url, path, None, started))
                time.sleep(0.1)
                continue
            call = Call(client, replica.url, path, status, started, answer)
            with self.lock:
                self.calls.append(call)
            return call
        pytest.fail(f"{client}: {path} found no replica answering within 300 s")


@deployment
def test_four_clients_twenty_rounds_through_a_kill_9_and_a_promotion(
    team: Team, replica_set: list[Replica], tokens: dict[str, str]
):
    """Issue 18's team test: 4 robots × 20 rounds on one campaign through both replicas; replica 1 is killed with
    ``kill -9`` and restarted; ``@champion`` moves to a new version in the middle; 0 5xx, every acknowledged
    observation exactly once (with its sender, once the campaign records it), both replicas on the new version
    within 30 s of the move, no prediction failed during the swap."""
    import mlflow
    import optuna

    from surrogate.storage import get_storage
    from surrogate.tracking import CHAMPION_ALIAS, REGISTERED_MODEL_NAME

    group = Group(replica_set)
    first, second = replica_set
    campaign = f"group-{uuid.uuid4().hex[:6]}"
    created = group.call("setup", "/campaigns", {"name": campaign, "objective": "conductivity"}, TOKEN, 0)
    assert created.status == 201, created.body
    # a read token reads but cannot write, on a real replica
    refused = group.call("scientist", "/observe", {"campaign": campaign, "observations": []}, tokens["scientist"], 1)
    assert refused.status == 403 and "needs role 'write'" in refused.body["error"], refused.body
    assert group.call("scientist", f"/campaigns/{campaign}", None, tokens["scientist"], 1).status == 200

    client = mlflow.MlflowClient(tracking_uri=team.mlflow_url, registry_uri=team.mlflow_url)
    old = str(client.get_model_version_by_alias(REGISTERED_MODEL_NAME, CHAMPION_ALIAS).version)

    acknowledged: dict[int, tuple[str, float]] = {}  # trial -> (robot, conductivity sent)
    acknowledged_lock = threading.Lock()
    restarted = threading.Event()
    done = threading.Event()
    problems: list[str] = []
    timeline: dict[str, float] = {}

    def robot(index: int) -> None:
        name, token = f"robot-{index}", tokens[f"robot-{index}"]
        try:
            for round_number in range(ROUNDS):
                if round_number == ROUNDS // 2 and not restarted.wait(timeout=400):
                    problems.append(f"{name}: the killed replica did not come back")
                    return
                asked = (index + round_number) % 2  # suggest on one replica, observe on the other
                client_id = f"{name}-round-{round_number}"
                body = {"campaign": campaign, "n": 1, "client_id": client_id}
                suggested = group.call(name, "/suggest", body, token, asked)
                if suggested.status != 200:
                    problems.append(f"{name} round {round_number}: /suggest {suggested.status} {suggested.body}")
                    return
                (suggestion,) = suggested.body["suggestions"]
                row = {k: suggestion[k] for k in ("trial", "buffer", "anneal_temp_c", "test_temp_c")}
                value = 1e-5 * (1 + index + 0.1 * round_number)
                body = {"campaign": campaign, "observations": [row | {"conductivity_s_cm": value}]}
                observed = group.call(name, "/observe", body, token, 1 - asked)
                if observed.status != 200:
                    problems.append(f"{name} round {round_number}: /observe {observed.status} {observed.body}")
                    return
                # a retry after a lost answer may find the first attempt recorded: acknowledged either way
                trials = observed.body["trials"] + observed.body["already_recorded"]
                if trials != [suggestion["trial"]]:
                    problems.append(f"{name} round {round_number}: observe answered {observed.body}")
                    return
                with acknowledged_lock:
                    if suggestion["trial"] in acknowledged:
                        problems.append(f"{name}: trial {suggestion['trial']} was handed out twice")
                    acknowledged[suggestion["trial"]] = (name, value)
        except Exception as exc:  # reported below, with the others
            problems.append(f"{name}: {type(exc).__name__}: {exc}")

    predictions: list[tuple[str, int | None, str | None, float]] = []

    def predictor(replica: Replica) -> None:
        while not done.is_set():
            if not group.up[replica.url]:
                time.sleep(0.1)
                continue
            started = time.monotonic()
            try:
                status, body = _http(f"{replica.url}/predict", {"designs": [GOOD]}, tokens["scientist"])
            except _LOST:  # the kill: that replica is about to be marked down
                predictions.append((replica.url, None, None, started))
                time.sleep(0.1)
                continue
            version = body["model"]["version"] if status == 200 else json.dumps(body)[:300]
            predictions.append((replica.url, status, version, started))

    def observed_count() -> int:
        with acknowledged_lock:
            return len(acknowledged)

    def wait_for(count: int) -> None:
        deadline = time.monotonic() + 600
        while observed_count() < count and time.monotonic() < deadline and not problems:
            time.sleep(0.1)

    threads = [threading.Thread(target=robot, args=(i,), daemon=True) for i in range(ROBOTS)]
    threads += [threading.Thread(target=predictor, args=(r,), daemon=True) for r in replica_set]
    for thread in threads:
        thread.start()
    try:
        wait_for(ROBOTS * 3)  # ~3 rounds in: kill -9 of the second replica, in the middle of the traffic
        timeline["killed"] = time.monotonic()
        second.kill_9()
        group.up[second.url] = False
        second.start()
        second.wait_ready()
        group.up[second.url] = True
        timeline["back"] = time.monotonic()
        restarted.set()
        wait_for(ROBOTS * (ROUNDS // 2 + 2))  # two rounds after the restart: promote
        source = client.get_model_version_by_alias(REGISTERED_MODEL_NAME, CHAMPION_ALIAS).source
        previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
        mlflow.set_tracking_uri(team.mlflow_url)
        mlflow.set_registry_uri(team.mlflow_url)
        try:
            version = str(mlflow.register_model(source, REGISTERED_MODEL_NAME).version)
        finally:
            mlflow.set_tracking_uri(previous[0])
            mlflow.set_registry_uri(previous[1])
        client.set_registered_model_alias(REGISTERED_MODEL_NAME, CHAMPION_ALIAS, version)
        timeline["promoted"] = time.monotonic()
        for thread in threads[:ROBOTS]:
            thread.join(timeout=900)
        while time.monotonic() - timeline["promoted"] < 35:  # predictions until past the 30 s limit
            time.sleep(0.5)
    finally:
        done.set()
        restarted.set()
        for thread in threads:
            thread.join(timeout=120)
    timeline["end"] = time.monotonic()

    assert not problems, problems[:5]
    assert all(not thread.is_alive() for thread in threads), "a client did not finish"
    # 0 5xx, from any replica, for any request; lost connections only while the second replica was down
    answers = [call for call in group.calls if call.status is not None]
    assert not [c for c in answers if c.status >= 500], [(c.path, c.status, c.body) for c in answers if c.status >= 500]
    lost = [call for call in group.calls if call.status is None]
    stray = [call for call in lost if not (call.url == second.url and call.started < timeline["back"])]
    assert not stray, (f"killed {second.url} at {timeline['killed']:.1f}, back at {timeline['back']:.1f}", stray[:5])
    # traffic went through both replicas before the kill and after the restart
    for url in (first.url, second.url):
        assert any(c.url == url and c.started < timeline["killed"] for c in answers), url
        assert any(c.url == url and c.started > timeline["back"] and c.path == "/observe" for c in answers), url

    # every acknowledged observation is in the store exactly once, with the value its robot sent
    study = optuna.load_study(study_name=campaign, storage=get_storage(team.campaigns_db))
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    assert len(acknowledged) == ROBOTS * ROUNDS
    assert sorted(t.number for t in complete) == sorted(acknowledged)
    for trial in complete:
        robot_name, value = acknowledged[trial.number]
        assert json.loads(trial.user_attrs["measured"])["conductivity_s_cm"] == pytest.approx(value, rel=1e-12)
    status = group.call("scientist", f"/campaigns/{campaign}", None, tokens["scientist"], 0)
    assert status.status == 200 and status.body["observed"] == ROBOTS * ROUNDS and status.body["pending"] == 0
    if "recorded_by" in (status.body.get("best") or {}):  # the campaign records senders: each trial has its robot's
        senders = {trial.number: trial.user_attrs.get("recorded_by") for trial in complete}
        assert senders == {trial: sender for trial, (sender, _) in acknowledged.items()}

    # the promotion: both replicas on the new version within 30 s, no prediction failed around the swap
    swap = [p for p in predictions if p[3] >= timeline["back"]]
    assert not [p for p in swap if p[1] != 200], [p for p in swap if p[1] != 200][:5]
    assert all(p[1] == 200 or (p[0] == second.url and p[3] < timeline["back"]) for p in predictions)
    for replica in replica_set:
        mine = [p for p in swap if p[0] == replica.url]
        assert {p[2] for p in mine} <= {old, version}, {p[2] for p in mine}
        late = [p for p in mine if p[3] > timeline["promoted"] + 30]
        assert late and all(p[2] == version for p in late), f"{replica.url} still answered {old} 30 s after the move"
        assert any(p[2] == old for p in mine if p[3] < timeline["promoted"])  # it did swap (not restarted onto it)


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


# ------------------------------------------------------------------ heavy work beyond one machine (joblib + Dask)
def _world_benchmark():
    """benchmarks/world_benchmark.py imported as the module ``world_benchmark``."""
    import importlib.util

    if "world_benchmark" in sys.modules:
        return sys.modules["world_benchmark"]
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "world_benchmark.py"
    spec = importlib.util.spec_from_file_location("world_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["world_benchmark"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_world_benchmark_on_a_local_dask_cluster_gives_the_serial_runs():
    """One world x 4 seeds (campaign, TPE, random; budget 4): the runs sent to a Dask cluster of worker processes
    (scheduler and workers in processes of their own, reached by address) equal the serial runs, run for run."""
    from dask.distributed import LocalCluster

    from surrogate.worlds import world_family

    bench = _world_benchmark()
    world = world_family(3, 0)[1]  # a reported world whose laws differ from the models'
    name = "rate30_x_retention100"
    optimum = world.optimum(bench.objective_of(name))["value"]
    tasks = [(method, world, name, seed, optimum) for method in ("campaign", "tpe", "random") for seed in range(4)]
    serial = bench.run_many(tasks, backend="loky", n_jobs=1, budget=4)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1")
        on_cluster = bench.run_many(tasks, backend="dask", address=cluster.scheduler_address, budget=4)

    def without_time(run: dict) -> dict:
        return {key: value for key, value in run.items() if key != "seconds"}

    assert len(serial) == len(on_cluster) == 12
    for task, here, there in zip(tasks, serial, on_cluster, strict=True):
        assert without_time(here) == without_time(there), task[0::3]
        assert 1 <= len(here["regret"]) <= 4
    with pytest.raises(SystemExit, match="--address names a Dask scheduler"):
        bench.run_many(tasks[:1], backend="loky", address="tcp://127.0.0.1:1")


@pytest.mark.slow
def test_tune_through_loky_and_a_local_dask_cluster_gives_the_serial_studies(tmp_path, monkeypatch):
    """``surrogate tune``'s studies (family gp x 3 targets, 2 trials each) in this process, in 2 loky processes and
    on a local Dask cluster by address: the same best values and parameters, every trial nested under its parent."""
    import mlflow
    from dask.distributed import LocalCluster

    from training.tune import tune

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    for name in ("SURROGATE_SETTINGS_FILE", "SURROGATE_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(name, raising=False)

    def studies(**backend) -> tuple[list[dict], str]:
        result = tune(families=["gp"], n_trials=2, seed=3, progress=False, **backend)
        return [
            {k: s[k] for k in ("family", "target", "best_value", "best_params")} for s in result.to_dict()["studies"]
        ], result.run_id

    serial, serial_run = studies()
    on_loky, loky_run = studies(backend="loky", n_jobs=2)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        on_dask, dask_run = studies(backend="dask", address=cluster.scheduler_address)
    assert [s["target"] for s in serial] == ["conductivity_s_cm", "rate_retention", "capacity_retention"]
    assert all(s["best_value"] is not None for s in serial)
    assert on_loky == serial and on_dask == serial
    client = mlflow.MlflowClient()
    for parent in (serial_run, loky_run, dask_run):
        children = client.search_runs(
            [client.get_run(parent).info.experiment_id], f"tags.mlflow.parentRunId = '{parent}'"
        )
        assert len(children) == 6, parent  # 3 studies x 2 trials
        assert client.get_run(parent).info.status == "FINISHED"
        assert any(key.startswith("tune.gp.") for key in client.get_run(parent).data.metrics)
