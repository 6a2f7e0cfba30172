"""Real ``surrogate serve`` subprocesses (2 workers) driven by ``bentoml.SyncHTTPClient`` and by plain HTTP.

The served model is the test double of ``test_service.py``, logged to a temporary MLflow store and named
by ``SURROGATE_MODEL_URI``; campaigns live in a temporary Optuna SQLite store shared by both workers.
Also: every hostile input of issue 11 answered 4xx (with a client timeout of a few seconds, so a hang fails),
and process hygiene (``kill -9`` of the server leaves no worker holding the port; a restart binds it).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytestmark = [pytest.mark.server, pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

TOKEN = "server-token"
GOOD = {"buffer": "SiO2", "anneal_temp_c": 300.0, "test_temp_c": 25.0}
ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _http(url: str, body: dict | None = None, token: str | None = None) -> tuple[int, dict | str]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    request.add_header("content-type", "application/json")
    if token:
        request.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            raw, status = response.read().decode(), response.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read().decode(), exc.code
    try:
        return status, json.loads(raw)
    except json.JSONDecodeError:
        return status, raw


def start_server(command: list[str], env: dict, cwd: Path, log_path: Path) -> subprocess.Popen:
    """``command`` (a ``surrogate serve``) started with its output in ``log_path``."""
    log = open(log_path, "w")  # noqa: SIM115 (the child keeps its own descriptor; closed here at once)
    try:
        return subprocess.Popen(command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    finally:
        log.close()


def wait_for_answer(url: str, process: subprocess.Popen, log_path: Path, want: int | None = None) -> int:
    """Poll ``url`` until it answers (``want``: that status), failing if the process exits or 90 s pass."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited {process.returncode}: {log_path.read_text()[-3000:]}")
        try:
            status = _http(url)[0]
            if want is None or status == want:
                return status
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"{url} gave no answer{f' {want}' if want else ''} after 90 s: {log_path.read_text()[-3000:]}")


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=60)


@contextlib.contextmanager
def serving_test_double(
    home: Path, workers: int, campaigns: tuple[str, ...] = (), extra_env: dict[str, str] | None = None
) -> Iterator[str]:
    """A real ``surrogate serve`` with a token, serving the test double fitted on the embedded data; its URL.

    Its MLflow store, campaign store and BentoML home live under ``home``; ``campaigns`` are created first
    (conductivity objective); ``extra_env`` is added to the server's environment. The test process keeps the same
    stores in its environment while the server runs.
    """
    import mlflow
    from test_service import make_surrogate

    from surrogate import tracking

    env = dict(
        os.environ,
        MLFLOW_TRACKING_URI=f"sqlite:///{home / 'mlflow.db'}",
        SURROGATE_HOME=str(home),
        SURROGATE_OPTUNA_STORAGE=f"sqlite:///{home / 'optuna.db'}",
        BENTOML_HOME=str(home / "bentoml"),
        SURROGATE_API_TOKEN=TOKEN,
        PYTHONPATH=os.pathsep.join([str(ROOT / "tests"), str(ROOT)]),
        **(extra_env or {}),
    )
    with pytest.MonkeyPatch.context() as mp:
        for key in ("MLFLOW_TRACKING_URI", "SURROGATE_HOME", "SURROGATE_OPTUNA_STORAGE"):
            mp.setenv(key, env[key])
        mp.chdir(home)
        tracking.configure_mlflow("server-test")
        with mlflow.start_run():
            mlflow.set_tags({"data_hash": "server-double", "data_source": "embedded"})
            env["SURROGATE_MODEL_URI"], _ = tracking.log_surrogate(make_surrogate(), register=False)
        from surrogate.campaign import Campaign
        from surrogate.objectives import Objective

        for name in campaigns:
            Campaign.create(name, Objective("conductivity"))
        port = _free_port()
        command = [
            str(Path(sys.executable).parent / "surrogate"),
            "serve",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ]
        process = start_server(command, env, home, home / "server.log")
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for_answer(f"{url}/readyz", process, home / "server.log", want=200)
            yield url
        finally:
            stop_server(process)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with serving_test_double(tmp_path_factory.mktemp("server"), workers=2, campaigns=("shared",)) as url:
        yield url


def test_sync_http_client_predicts_and_reports_the_model(server):
    import bentoml

    with bentoml.SyncHTTPClient(server, server_ready_timeout=60) as client:
        answer = client.predict(designs=[GOOD, {**GOOD, "buffer": "bare", "cycles": 300}], level=0.9)
        info = client.model_info()
    predictions = answer["predictions"]
    assert [p["design"]["buffer"] for p in predictions] == ["sio2", "none"]
    for p in predictions:
        for target in ("conductivity_s_cm", "rate_retention", "capacity_retention"):
            assert p[target]["lower"] <= p[target]["mean"] <= p[target]["upper"]
    assert "not measurements" in answer["notice"]
    assert info["data_hash"] == "test-double" and info["name"].startswith("models:/")  # the bundle's own info


def test_plain_http_errors_health_and_metrics(server):
    status, body = _http(f"{server}/predict", {"designs": [{**GOOD, "buffer": "graphene"}]})
    assert status == 400 and "allowed ids" in json.dumps(body)
    status, body = _http(f"{server}/predict", {"designs": [GOOD] * 10_001})
    assert status == 413 and "10000" in body["error"]
    assert _http(f"{server}/suggest", {"campaign": "shared"})[0] == 401
    assert _http(f"{server}/suggest", {"campaign": "missing"}, TOKEN)[0] == 404
    request = urllib.request.Request(f"{server}/predict", data=b'{"designs": [', method="POST")
    request.add_header("content-type", "application/json")
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=60)
    assert raised.value.code == 400
    for path in ("/healthz", "/livez", "/readyz", "/docs.json"):
        assert _http(f"{server}{path}")[0] == 200, path
    assert _http(f"{server}/metrics")[0] == 401  # the traffic is the token holder's to see
    status, metrics = _http(f"{server}/metrics", token=TOKEN)
    assert status == 200 and 'surrogate_http_requests_total{method="POST",route="/predict",status="400"}' in metrics


def _series(metrics_text: str) -> set[str]:
    """The sample lines' names and labels (no values, no ``pid``) of a Prometheus exposition text.

    The ``pid`` label is dropped: with 2 workers a per-worker gauge (``last_request_timestamp``) appears once the
    second worker has answered a request, which is not a series grown from a stray path.
    """
    lines = (line.rsplit(" ", 1)[0] for line in metrics_text.splitlines() if line and not line.startswith("#"))
    return {re.sub(r'pid="\d+",?', "", line) for line in lines}


def test_metrics_labels_are_route_templates_and_do_not_grow_with_stray_paths(server):
    def stray_requests(tag: str) -> None:
        for i in range(40):
            _http(f"{server}/no/such/path/{tag}-{i}")
            _http(f"{server}/campaigns/secret-campaign-{tag}-{i}")
            _http(f"{server}/campaigns/secret-campaign-{tag}-{i}", token=TOKEN)

    stray_requests("first")
    status, before = _http(f"{server}/metrics", token=TOKEN)
    assert status == 200
    stray_requests("second")
    _, after = _http(f"{server}/metrics", token=TOKEN)
    assert _series(after) == _series(before)
    assert "secret-campaign" not in after and "/no/such/path" not in after
    assert 'route="/campaigns/{name}"' in after and 'route="other"' in after


def test_two_workers_never_hand_out_a_suggestion_twice_and_lose_no_observation(server):
    def ask(i: int) -> list[dict]:
        status, body = _http(f"{server}/suggest", {"campaign": "shared", "n": 2, "client_id": f"robot-{i}"}, TOKEN)
        assert status == 200, body
        return body["suggestions"]

    with ThreadPoolExecutor(8) as pool:
        batches = list(pool.map(ask, range(8)))
    trials = [s["trial"] for batch in batches for s in batch]
    assert len(trials) == 16 and len(set(trials)) == 16

    def tell(suggestion: dict) -> int:
        row = {k: suggestion[k] for k in ("trial", "buffer", "anneal_temp_c", "test_temp_c")}
        status, body = _http(
            f"{server}/observe", {"campaign": "shared", "observations": [row | {"conductivity_s_cm": 1e-5}]}, TOKEN
        )
        assert status == 200, body
        return body["trials"][0]

    with ThreadPoolExecutor(8) as pool:
        told = list(pool.map(tell, [s for batch in batches for s in batch]))
    assert sorted(told) == sorted(trials)
    from surrogate.campaign import Campaign

    status = Campaign.load("shared", storage=os.environ.get("SURROGATE_OPTUNA_STORAGE")).status()
    assert status["observed"] == 16 and status["pending"] == 0


# ------------------------------------------------------------------ hostile input (issue 11)
def _raw(url: str, method: str, path: str, body: bytes = b"", headers: dict | None = None) -> tuple[int, bytes]:
    """One request as sent (bytes headers allowed), with a 60 s client timeout: a hang fails the test."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in {"content-type": "application/json", **(headers or {})}.items():
            if value is not None:
                connection.putheader(name, value)
        connection.putheader("content-length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


AUTH = {"authorization": f"Bearer {TOKEN}"}
_DESIGN = '{"buffer": "sio2", "anneal_temp_c": %s, "test_temp_c": 25}'
_OBSERVE = '{"campaign": "shared", "observations": [{"buffer": "sio2", "anneal_temp_c": 300, "test_temp_c": 25, "cycles": %s}]}'
HOSTILE = [
    ("non-ASCII token", "POST", "/suggest", b'{"campaign": "shared"}', {"authorization": "Bearer ✓é".encode()}, 401),
    ("Latin-1 token", "POST", "/observe", b"{}", {"authorization": b"Bearer \xff\xfe"}, 401),
    ("Basic auth", "POST", "/search", b"{}", {"authorization": f"Basic {TOKEN}"}, 401),
    ("token in another scheme", "GET", "/campaigns", b"", {"authorization": f"Token {TOKEN}"}, 401),
    ("no token on status", "GET", "/campaigns/shared", b"", {}, 401),
    (
        "path traversal name",
        "POST",
        "/suggest",
        b'{"campaign": "../../etc/passwd"}',
        AUTH,
        400,
    ),  # not a campaign name at all
    ("SQL-looking name", "POST", "/suggest", b'{"campaign": "x\'; DROP TABLE studies;--"}', AUTH, 400),
    ("NUL in name", "POST", "/suggest", b'{"campaign": "sha\\u0000red"}', AUTH, 400),
    ("NUL in path name", "GET", "/campaigns/sha%00red", b"", AUTH, 404),
    ("n true", "POST", "/suggest", b'{"campaign": "shared", "n": true}', AUTH, 400),
    ("n string", "POST", "/suggest", b'{"campaign": "shared", "n": "2"}', AUTH, 400),
    ("n huge", "POST", "/suggest", b'{"campaign": "shared", "n": 1000000000000000000000000000000}', AUTH, 400),
    ("unknown key", "POST", "/suggest", b'{"campaign": "shared", "nn": 2}', AUTH, 400),
    ("cycles -5", "POST", "/observe", (_OBSERVE % "-5").encode(), AUTH, 400),
    ("cycles 1e20", "POST", "/observe", (_OBSERVE % "1e20").encode(), AUTH, 400),
    ("cycles 10**30", "POST", "/observe", (_OBSERVE % ("1" + "0" * 30)).encode(), AUTH, 400),
    ("trial -1", "POST", "/observe", b'{"campaign": "shared", "observations": [{"trial": -1}]}', AUTH, 400),
    ("temperature true", "POST", "/predict", ('{"designs": [%s]}' % (_DESIGN % "true")).encode(), {}, 400),
    ("temperature string", "POST", "/predict", ('{"designs": [%s]}' % (_DESIGN % '"300"')).encode(), {}, 400),
    ("NaN", "POST", "/predict", ('{"designs": [%s]}' % (_DESIGN % "NaN")).encode(), {}, 400),
    ("Infinity", "POST", "/predict", ('{"designs": [%s]}' % (_DESIGN % "Infinity")).encode(), {}, 400),
    ("1e309", "POST", "/predict", ('{"designs": [%s]}' % (_DESIGN % "1e309")).encode(), {}, 400),
    ("level true", "POST", "/predict", ('{"designs": [%s], "level": true}' % (_DESIGN % "300")).encode(), {}, 400),
    ("unknown top-level key", "POST", "/predict", ('{"designs": [%s], "x": 1}' % (_DESIGN % "300")).encode(), {}, 400),
    ("deep nesting", "POST", "/predict", b'{"designs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", {}, 400),
    ("not JSON", "POST", "/predict", b"designs=1", {}, 400),
    ("form body", "POST", "/predict", b"designs=1", {"content-type": "application/x-www-form-urlencoded"}, 415),
    ("text body", "POST", "/predict", b"{}", {"content-type": "text/plain"}, 415),
    ("no content type", "POST", "/predict", b"{}", {"content-type": None}, 415),
    ("n_trials true", "POST", "/search", b'{"objectives": [{"kind": "conductivity"}], "n_trials": true}', AUTH, 400),
    ("create bad name", "POST", "/campaigns", b'{"name": "a\\u0000", "objective": "conductivity"}', AUTH, 400),
]


@pytest.mark.parametrize(("label", "method", "path", "body", "headers", "status"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_input_gets_a_client_error_at_once(server, label, method, path, body, headers, status):
    answer, raw = _raw(server, method, path, body, headers)
    assert answer == status, (label, raw[:300])
    document = json.loads(raw)
    assert isinstance(document["error"], str) and isinstance(document["detail"], list)
    assert "shared" not in document["error"] or path.endswith("shared")  # a 404 never lists the campaigns


def test_a_20_mb_body_is_413(server):
    body = b'{"designs": [' + b'{"buffer": "sio2", "anneal_temp_c": 300, "test_temp_c": 25},' * 350_000 + b"]}"
    assert len(body) > 20_000_000
    try:
        status, raw = _raw(server, "POST", "/predict", body)
    except (BrokenPipeError, ConnectionResetError):  # the server may answer and close before the upload ends
        return
    assert status == 413 and b"16777216 bytes" in raw


# ------------------------------------------------------------------ process hygiene and readiness
def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl(PR_SET_PDEATHSIG) is Linux-only")
def test_kill_9_of_serve_stops_its_workers_and_a_restart_binds_the_port(tmp_path):
    """Without a model the service still starts and /readyz answers 503; after ``kill -9`` of ``surrogate serve``
    no worker survives, so a new server binds the same port."""
    env = dict(
        os.environ,
        MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'empty-mlflow.db'}",
        SURROGATE_HOME=str(tmp_path),
        BENTOML_HOME=str(tmp_path / "bentoml"),
        PYTHONPATH=str(ROOT),
    )
    env.pop("SURROGATE_MODEL_URI", None)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    command = [str(Path(sys.executable).parent / "surrogate"), "serve", "--port", str(port), "--workers", "2"]
    first = start_server(command, env, tmp_path, tmp_path / "first.log")
    second = None
    try:
        assert wait_for_answer(f"{url}/readyz", first, tmp_path / "first.log") == 503
        status, body = _http(f"{url}/predict", {"designs": [GOOD]})
        assert status == 503 and "surrogate train" in body["error"]
        workers = _children(first.pid)
        assert len(workers) >= 2, workers
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=60)
        deadline = time.monotonic() + 60
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(pid) for pid in workers), "workers outlived the server"
        second = start_server(command, env, tmp_path, tmp_path / "second.log")
        assert wait_for_answer(f"{url}/readyz", second, tmp_path / "second.log") == 503
        assert "address already in use" not in (tmp_path / "second.log").read_text().lower()
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                stop_server(process)
        for pid in _children(first.pid):
            os.kill(pid, signal.SIGKILL)
