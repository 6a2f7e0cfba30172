"""One real ``bentoml serve`` subprocess (2 workers) driven by ``bentoml.SyncHTTPClient`` and by plain HTTP.

The served model is the test double of ``test_service.py``, logged to a temporary MLflow store and named
by ``SURROGATE_MODEL_URI``; campaigns live in a temporary Optuna SQLite store shared by both workers.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
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


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import mlflow
    from test_service import make_surrogate

    from surrogate import tracking

    home = tmp_path_factory.mktemp("server")
    env = dict(
        os.environ,
        MLFLOW_TRACKING_URI=f"sqlite:///{home / 'mlflow.db'}",
        SURROGATE_HOME=str(home),
        SURROGATE_OPTUNA_STORAGE=f"sqlite:///{home / 'optuna.db'}",
        BENTOML_HOME=str(home / "bentoml"),
        SURROGATE_API_TOKEN=TOKEN,
        PYTHONPATH=os.pathsep.join([str(ROOT / "tests"), str(ROOT)]),
    )
    with pytest.MonkeyPatch.context() as mp:
        for key in ("MLFLOW_TRACKING_URI", "SURROGATE_HOME", "SURROGATE_OPTUNA_STORAGE"):
            mp.setenv(key, env[key])
        mp.chdir(home)
        tracking.configure_mlflow("server-test")
        with mlflow.start_run():
            mlflow.set_tags({"data_hash": "server-double", "data_source": "embedded"})
            model_uri, _ = tracking.log_surrogate(make_surrogate(), register=False)
        env["SURROGATE_MODEL_URI"] = model_uri
        from surrogate.campaign import Campaign
        from surrogate.objectives import Objective

        Campaign.create("shared", Objective("conductivity"))
        port = _free_port()
        log = open(home / "server.log", "w")  # noqa: SIM115 (closed at teardown)
        command = [str(Path(sys.executable).parent / "surrogate"), "serve", "--port", str(port), "--workers", "2"]
        process = subprocess.Popen(command, env=env, cwd=home, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    pytest.fail(f"server exited {process.returncode}: {(home / 'server.log').read_text()[-3000:]}")
                try:
                    if _http(f"{url}/readyz")[0] == 200:
                        break
                except OSError:
                    pass
                time.sleep(0.5)
            else:
                pytest.fail("server not ready after 90 s")
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
            log.close()


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
        urllib.request.urlopen(request, timeout=30)
    assert raised.value.code == 400
    for path in ("/healthz", "/livez", "/readyz", "/metrics", "/docs.json"):
        assert _http(f"{server}{path}")[0] == 200, path
    status, metrics = _http(f"{server}/metrics")
    assert "bentoml_service_request_total" in metrics or "bentoml_service_request_duration" in metrics


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
