"""The HTTP service in-process (ASGI): every endpoint, every class of client error, the OpenAPI document.

The model is a small test double (:class:`TargetModel`, a straight line in the
natural space of each target) injected through ``serving.service.load_surrogate``,
so these tests do not depend on any model family.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import math
import re
import uuid
import warnings

import numpy as np
import pytest

from surrogate.dataset import load_default_dataset
from surrogate.design import TARGETS, TEST_TEMP_C
from surrogate.errors import InputError
from surrogate.models.base import FEATURES, TARGET_SPACES, TrainingDomain, design_batch, design_frame
from surrogate.models.base import Surrogate as SurrogateModel

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

TOKEN = "s3cret-token"
GOOD = {"buffer": "sio2", "anneal_temp_c": 300.0, "test_temp_c": 25.0}


class TargetModel:
    """Test double of a target model: a straight line in ``test_temp_c`` (natural space), constant std."""

    def __init__(self, std: float = 0.1) -> None:
        self.std = std

    def fit(self, X, y):
        x = X[TEST_TEMP_C].to_numpy(float)
        self.coef_ = np.array([0.0, float(np.mean(y))]) if np.ptp(x) == 0 else np.polyfit(x, y, 1)
        return self

    def predict(self, X, return_std: bool = False):
        mean = np.polyval(self.coef_, X[TEST_TEMP_C].to_numpy(float))
        return (mean, np.full_like(mean, self.std)) if return_std else mean


def make_surrogate() -> SurrogateModel:
    """A :class:`Surrogate` bundle of test doubles fitted on the embedded data (with its training domains)."""
    data = load_default_dataset()
    models, domains = {}, {}
    for target in TARGETS:
        rows = data[data[target].notna()]
        X = design_frame(rows)[list(FEATURES[target])]
        models[target] = TargetModel().fit(X, TARGET_SPACES[target].forward(rows[target].to_numpy(float)))
        domains[target] = TrainingDomain.from_frame(X)
    return SurrogateModel(models, domains, {"data_hash": "test-double", "data_source": "embedded"})


DOUBLE = make_surrogate()
REAL_LOADER = __import__("serving.service", fromlist=["load_surrogate"]).load_surrogate
DOUBLE_INFO = {"name": "test-double", "version": "1", "data_hash": "test-double", "cv_scores": {"rmse": 0.1}}


def _client(monkeypatch, loader, token: str | None = None, max_bytes: int | None = None):
    from conftest import surrogate_asgi_app
    from starlette.testclient import TestClient

    import serving.service as service

    monkeypatch.setattr(service, "load_surrogate", loader)
    if token is None:
        monkeypatch.delenv("SURROGATE_API_TOKEN", raising=False)
    else:
        monkeypatch.setenv("SURROGATE_API_TOKEN", token)
    if max_bytes is None:
        monkeypatch.delenv("SURROGATE_MAX_BODY_BYTES", raising=False)
    else:
        monkeypatch.setenv("SURROGATE_MAX_BODY_BYTES", str(max_bytes))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return TestClient(surrogate_asgi_app(), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENTOML_HOME", str(tmp_path_factory.mktemp("bentoml")))
        mp.setenv("SURROGATE_HOME", str(tmp_path_factory.mktemp("home")))
        with _client(mp, lambda: (DOUBLE, dict(DOUBLE_INFO)), token=TOKEN, max_bytes=4_000_000) as test_client:
            yield test_client


def _post(client, path: str, body, headers: dict | None = None):
    content = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post(path, content=content, headers={"content-type": "application/json", **(headers or {})})


def _fields(response) -> list[str]:
    """Every field the error body names (pydantic ``loc`` entries and library field names)."""
    body = response.json()
    names = [str(part) for item in body.get("detail", []) for part in item.get("loc", [])]
    names += [str(item["column"]) for item in body.get("detail", []) if item.get("column")]
    return names


# ---------------------------------------------------------------- /predict
def test_predict_returns_intervals_canonical_designs_model_and_notice(client):
    designs = [
        {"buffer": "SiO₂", "anneal_temp_c": 300, "test_temp_c": 25, "c_rate": 10, "cycles": 100},
        {"buffer": "bare", "anneal_temp_c": 300, "test_temp_c": 25, "protocol": "LONG"},
        {"buffer": "lipon", "anneal_temp_c": 900, "test_temp_c": 25},
    ]
    response = _post(client, "/predict", {"designs": designs, "level": 0.8})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["level"] == 0.8
    assert body["model"]["name"] == "test-double" and body["model"]["data_hash"] == "test-double"
    assert "reconstruction" in body["notice"] and "not measurements" in body["notice"]
    first, second, third = body["predictions"]
    assert first["design"]["buffer"] == "sio2" and second["design"]["buffer"] == "none"
    assert second["design"]["protocol"] == "long" and second["design"]["c_rate"] == 30.0
    assert second["design"]["cycles"] == 100 and isinstance(second["design"]["cycles"], int)  # int, as the contract
    expected = DOUBLE.predict(design_frame(designs), level=0.8)
    for i, item in enumerate(body["predictions"]):
        for target in TARGETS:
            interval = item[target]
            assert interval["lower"] <= interval["mean"] <= interval["upper"]
            assert interval["mean"] == pytest.approx(expected[f"{target}_mean"][i])
            assert interval["upper"] == pytest.approx(expected[f"{target}_upper"][i])
    assert first["extrapolation"] is False and first["extrapolation_reasons"] == []
    assert third["extrapolation"] is True
    assert any("anneal_temp_c" in reason for reason in third["extrapolation_reasons"])


def test_predict_accepts_ten_thousand_designs_and_refuses_more_with_413(client):
    response = _post(client, "/predict", {"designs": [GOOD] * 10_000})
    assert response.status_code == 200
    assert len(response.json()["predictions"]) == 10_000
    response = _post(client, "/predict", {"designs": [GOOD] * 10_001})
    assert response.status_code == 413
    assert "10000" in response.json()["error"] and "designs" in _fields(response)


@pytest.mark.parametrize(
    ("design", "field", "words"),
    [
        ({**GOOD, "buffer": "graphene"}, "buffer", ["unknown buffer", "none, llto_ncm, sio2, lipon"]),
        ({**GOOD, "test_temp_c": 3000}, "test_temp_c", ["outside any plausible operating temperature"]),
        ({**GOOD, "test_temp_c": -300}, "test_temp_c", ["below absolute zero"]),
        ({**GOOD, "test_temp_c": 298.15}, "test_temp_c", ["looks like kelvin", "25 °C"]),
        ({**GOOD, "anneal_temp_c": -10}, "anneal_temp_c", ["not a plausible anneal temperature"]),
        ({**GOOD, "c_rate": 0}, "c_rate", ["greater than"]),
        ({**GOOD, "cycles": 0}, "cycles", ["greater than or equal"]),
        ({**GOOD, "cycles": 2.5}, "cycles", ["integer"]),
        ({**GOOD, "protocol": "fast"}, "protocol", ["unknown protocol", "standard, long"]),
        ({"buffer": "sio2", "test_temp_c": 25}, "anneal_temp_c", ["Field required"]),
        ({**GOOD, "anneal_temp": 300}, "anneal_temp", ["Extra inputs"]),
        ({**GOOD, "test_temp_c": "warm"}, "test_temp_c", ["valid number"]),
        ({**GOOD, "test_temp_c": True}, "test_temp_c", ["valid number"]),
        ({**GOOD, "test_temp_c": "25"}, "test_temp_c", ["valid number"]),
        ({**GOOD, "cycles": "300"}, "cycles", ["valid integer"]),
        ({**GOOD, "cycles": True}, "cycles", ["valid integer"]),
        ({**GOOD, "cycles": 10**30}, "cycles", ["less than or equal"]),
        ({**GOOD, "c_rate": 1e20}, "c_rate", ["less than or equal"]),
        ({**GOOD, "buffer": 3}, "buffer", ["valid string"]),
    ],
)
def test_predict_bad_design_is_400_naming_the_field_and_reason(client, design, field, words):
    response = _post(client, "/predict", {"designs": [GOOD, design]})
    assert response.status_code == 400, response.text
    assert field in _fields(response) and 1 in response.json()["detail"][0]["loc"]
    for word in words:
        assert word in response.json()["detail"][0]["msg"] or word in response.json()["error"]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_predict_refuses_nan_and_infinity_literals(client, literal):
    body = '{"designs": [{"buffer": "sio2", "anneal_temp_c": ' + literal + ', "test_temp_c": 25}]}'
    response = _post(client, "/predict", body)
    assert response.status_code == 400
    assert "anneal_temp_c" in _fields(response) and "finite" in response.text


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"designs": []}, "designs", ["at least 1 item"]),
        ({}, "designs", ["Field required"]),
        ({"designs": "sio2"}, "designs", ["valid array"]),
        ({"designs": [GOOD], "level": 1.5}, "level", ["less than or equal to 0.999"]),
        ({"designs": [GOOD], "level": True}, "level", ["valid number"]),
        ({"designs": [GOOD], "level": "0.9"}, "level", ["valid number"]),
        ({"designs": [GOOD], "levle": 0.9}, "levle", ["Extra inputs are not permitted"]),
        ('{"designs": [', None, ["Invalid JSON"]),
        ("[1, 2]", None, ["should be an object"]),
    ],
)
def test_predict_bad_body_is_400(client, body, field, words):
    response = _post(client, "/predict", body)
    assert response.status_code == 400, response.text
    if field:
        assert field in _fields(response)
    for word in words:
        assert word in response.text


def test_body_over_the_limit_is_413_even_when_chunked(client):
    big = json.dumps({"designs": [GOOD] * 70_000})
    assert len(big) > 4_000_000
    response = _post(client, "/predict", big)
    assert response.status_code == 413 and "4000000 bytes" in response.json()["error"]

    def chunks():
        for start in range(0, len(big), 65536):
            yield big[start : start + 65536].encode()

    response = client.post("/predict", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413


@pytest.mark.parametrize(
    "media_type", ["multipart/form-data", "application/x-www-form-urlencoded", "text/plain", "application/xml", None]
)
def test_bodies_other_than_json_are_415_asking_for_json(client, media_type):
    body = json.dumps({"designs": [GOOD]})
    headers = {"content-type": media_type} if media_type else {}
    response = client.post("/predict", content=body, headers=headers)
    assert response.status_code == 415 and "application/json" in response.json()["error"]
    assert "content-type" in _fields(response)


def test_json_with_a_charset_is_accepted_and_an_empty_post_needs_no_content_type(client):
    body = json.dumps({"designs": [GOOD]})
    assert (
        client.post("/predict", content=body, headers={"content-type": "application/json; charset=utf-8"}).status_code
        == 200
    )
    assert client.post("/model_info").status_code == 200


# -------------------------------------------------------------- model info
def test_model_info_names_the_model_and_its_training(client):
    response = client.post("/model_info")
    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "test-double" and body["version"] == "1"
    assert body["data_hash"] == "test-double" and body["cv_scores"] == {"rmse": 0.1}
    assert "not measurements" in body["notice"]


def test_health_metrics_and_docs_stay_open(client):
    for path in ("/healthz", "/livez", "/readyz", "/docs.json"):
        assert client.get(path).status_code == 200, path
    assert client.get("/metrics", headers={"authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_openapi_lists_every_endpoint_with_its_schema(client):
    document = client.get("/docs.json").json()
    for path in ("/predict", "/model_info", "/suggest", "/observe", "/search", "/campaigns"):
        assert path in document["paths"], path
        operation = document["paths"][path]["post"]
        ok = operation["responses"].get("200") or operation["responses"]["201"]
        assert ok["content"]["application/json"]["schema"]
    for path in ("/model_info", "/campaigns", "/campaigns/{name}"):
        assert document["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"], path
    request = document["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert request["required"] == ["designs"] and request["additionalProperties"] is False
    design = document["components"]["schemas"]["Design"]
    assert design["properties"]["test_temp_c"]["maximum"] == 200
    assert set(design["required"]) == {"buffer", "anneal_temp_c", "test_temp_c"}


def test_openapi_is_the_projects_own_in_the_openapi_3_0_dialect(client):
    from surrogate import __version__
    from surrogate.design import BUFFERS, PROTOCOLS

    document = client.get("/docs.json").json()
    info = document["info"]
    assert document["openapi"].startswith("3.0")
    assert info["title"] == "LLTO surrogate service" and info["version"] == __version__
    text = json.dumps(document)
    for boilerplate in ("slack", "twitter", "bentoml team", "iodescriptor"):
        assert boilerplate not in text.lower(), boilerplate
    assert "CONTRACT.md" not in text  # the project's own contract is docs/contract.md
    assert '"examples"' not in text and '{"type": "null"}' not in text  # 3.1 / JSON Schema 2020-12 constructs
    design = document["components"]["schemas"]["Design"]["properties"]
    assert design["buffer"]["enum"] == list(BUFFERS) and design["protocol"]["enum"] == list(PROTOCOLS)
    assert design["c_rate"]["exclusiveMinimum"] is True and design["c_rate"]["minimum"] == 0


def test_openapi_documents_the_token_and_every_error_answer(client):
    document = client.get("/docs.json").json()
    scheme = document["components"]["securitySchemes"]["bearerAuth"]
    assert scheme == {**scheme, "type": "http", "scheme": "bearer"}
    paths = document["paths"]
    protected = {("/suggest", "post"), ("/observe", "post"), ("/search", "post"), ("/campaigns", "post")}
    protected |= {("/campaigns", "get"), ("/campaigns/{name}", "get"), ("/ingest", "post")}
    for path, item in paths.items():
        for method, operation in item.items():
            secured = operation.get("security") == [{"bearerAuth": []}]
            assert secured == ((path, method) in protected), (path, method)
            if secured:
                assert "401" in operation["responses"]
    predict = paths["/predict"]["post"]["responses"]
    assert {"400", "413", "415", "500", "503"} <= set(predict)
    assert "404" in paths["/suggest"]["post"]["responses"] and "409" in paths["/observe"]["post"]["responses"]
    assert "409" in paths["/campaigns"]["post"]["responses"] and "404" in paths["/campaigns/{name}"]["get"]["responses"]
    assert "503" in paths["/readyz"]["get"]["responses"]
    assert "400" in paths["/campaigns/{name}"]["get"]["responses"]  # a name that is not a campaign name
    assert {"400", "401", "408", "413", "415"} <= set(paths["/ingest"]["post"]["responses"])
    form = paths["/ingest"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["required"] == ["manifest"] and form["properties"]["files"]["items"]["format"] == "binary"
    client_id = document["components"]["schemas"]["SuggestRequest"]["properties"]["client_id"]
    assert client_id["nullable"] is True and client_id["default"] is None  # optional fields show null
    assert client.get("/campaigns/sha%00red", headers={"authorization": f"Bearer {TOKEN}"}).status_code in (400, 404)
    error = predict["400"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/ErrorResponse"}
    assert document["components"]["schemas"]["ErrorResponse"]["properties"]["detail"]["type"] == "array"


def test_shipped_examples_are_valid_requests(client):
    """Each request example of the document (what Swagger UI's "Try it out" sends) is accepted as sent."""
    document = client.get("/docs.json").json()
    example = document["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]["example"]
    response = _post(client, "/predict", example)
    assert response.status_code == 200, response.text
    for path in ("/suggest", "/observe", "/search", "/campaigns"):
        schema = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert "example" in schema, path
    search = document["paths"]["/search"]["post"]["requestBody"]["content"]["application/json"]["schema"]["example"]
    assert _post(client, "/search", search, AUTH).status_code == 200


def test_swagger_page_is_local_and_titled(client):
    page = client.get("/").text
    assert "<title>LLTO surrogate service</title>" in page
    assert "googletagmanager" not in page and "https://" not in page and "http://" not in page
    assert "validatorUrl: null" in page
    for asset in ("swagger-ui.css", "swagger-ui-bundle.js"):
        assert f"./static_content/{asset}" in page
        assert client.get(f"/static_content/{asset}").status_code == 200


# -------------------------------------------------------------- bearer token
@pytest.mark.parametrize("path", ["/suggest", "/observe", "/search", "/campaigns"])
@pytest.mark.parametrize(
    "header", [None, "Bearer wrong", "Basic " + TOKEN, TOKEN, f"Bearer {TOKEN}é".encode(), "Bearer ✓".encode()]
)
def test_state_changing_endpoints_need_the_bearer_token(client, path, header):
    headers = {"authorization": header} if header else {}
    response = _post(client, path, {"campaign": "c"}, headers)
    assert response.status_code == 401
    assert "authorization" in _fields(response) and "Bearer" in response.json()["error"]
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("path", ["/campaigns", "/campaigns/films-1"])
def test_campaign_reads_need_the_token_too(client, path):
    assert client.get(path).status_code == 401
    assert client.get(path, headers={"authorization": "Bearer ✓".encode()}).status_code == 401


def test_read_only_endpoints_need_no_token(client):
    assert _post(client, "/predict", {"designs": [GOOD]}).status_code == 200
    assert client.post("/model_info").status_code == 200
    assert client.get("/model_info").json() == client.post("/model_info").json()


def test_guard_without_a_token_leaves_every_path_open_but_still_limits_the_body():
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from serving.middleware import GuardMiddleware

    async def echo(request):
        return PlainTextResponse(str(len(await request.body())))

    app = GuardMiddleware(Starlette(routes=[Route("/suggest", echo, methods=["POST"])]), token="", max_bytes=10)
    json_type = {"content-type": "application/json"}
    with TestClient(app) as test_client:
        assert test_client.post("/suggest", content=b"12345", headers=json_type).text == "5"
        assert test_client.post("/suggest", content=b"x" * 11, headers=json_type).status_code == 413
        assert test_client.post("/suggest", content=iter([b"x" * 6, b"y" * 6]), headers=json_type).status_code == 413
        assert test_client.post("/suggest", content=iter([b"x" * 4, b"y" * 4]), headers=json_type).text == "8"


def test_body_limit_from_the_environment_must_be_a_positive_integer(monkeypatch):
    from serving.middleware import DEFAULT_MAX_BODY_BYTES, max_body_bytes

    monkeypatch.delenv("SURROGATE_MAX_BODY_BYTES", raising=False)
    assert max_body_bytes() == DEFAULT_MAX_BODY_BYTES
    for bad in ("lots", "-5", "0"):
        monkeypatch.setenv("SURROGATE_MAX_BODY_BYTES", bad)
        with pytest.raises(InputError, match="SURROGATE_MAX_BODY_BYTES"):
            max_body_bytes()


# ------------------------------------------------ model loading (service class in-process, no second ASGI app)
def _service(monkeypatch, loader=None):
    """A fresh service instance (BentoML allows one ASGI app per process: its metrics register globally)."""
    import serving.service as service

    monkeypatch.setattr(service, "load_surrogate", loader or REAL_LOADER)
    return service.Surrogate()


def _answer(response) -> tuple[int, dict]:
    if inspect.isawaitable(response):  # /predict is async (it batches concurrent requests)
        response = asyncio.run(_awaited(response))
    return response.status_code, json.loads(response.body)


async def _awaited(awaitable):
    return await awaitable


def test_no_trained_model_is_503_saying_to_run_train(monkeypatch):
    from serving.schemas import Design

    def no_model():
        raise InputError("no trained model: run `surrogate train` first")

    instance = _service(monkeypatch, no_model)
    for status, body in (
        _answer(instance.predict(designs=[Design(**GOOD)], level=0.9)),
        _answer(instance.model_info()),
    ):
        assert status == 503 and "surrogate train" in body["error"]
    assert instance.__is_ready__() is False


def test_readyz_turns_ready_once_a_model_can_be_loaded(monkeypatch):
    from serving.schemas import Design

    available = []

    def later():
        if not available:
            raise InputError("no trained model: run `surrogate train` first")
        return DOUBLE, dict(DOUBLE_INFO)

    monkeypatch.setenv("SURROGATE_MODEL_RETRY_S", "0")
    instance = _service(monkeypatch, later)
    assert instance.__is_ready__() is False
    available.append(True)
    assert instance.__is_ready__() is True
    assert _answer(instance.predict(designs=[Design(**GOOD)], level=0.9))[0] == 200


def test_real_champion_from_mlflow_is_loaded_by_default(tmp_stores, monkeypatch):
    """End to end through surrogate.tracking: the double logged and registered as champion, then served."""
    import mlflow

    from serving.schemas import Design
    from surrogate import tracking

    monkeypatch.delenv("SURROGATE_MODEL_URI", raising=False)
    tracking.configure_mlflow("service-test")
    with mlflow.start_run():
        mlflow.set_tags({"data_hash": "abc123", "data_source": "embedded"})
        tracking.log_surrogate(DOUBLE)
    instance = _service(monkeypatch)
    status, info = _answer(instance.model_info())
    assert status == 200 and info["name"] == "llto-surrogate" and info["version"] == "1"
    assert info["data_hash"] == "abc123" and "not measurements" in info["notice"]
    status, body = _answer(instance.predict(designs=[Design(**GOOD)], level=0.9))
    assert status == 200
    mean = body["predictions"][0]["conductivity_s_cm"]["mean"]
    assert math.isclose(mean, DOUBLE.predict([GOOD])["conductivity_s_cm_mean"][0])


def test_model_uri_env_selects_another_model(tmp_stores, monkeypatch):
    import mlflow

    from serving.schemas import Design
    from surrogate import tracking

    tracking.configure_mlflow("service-test")
    with mlflow.start_run():
        uri, _ = tracking.log_surrogate(DOUBLE, register=False)
    monkeypatch.setenv("SURROGATE_MODEL_URI", uri)
    assert _answer(_service(monkeypatch).model_info())[1]["name"] == uri
    monkeypatch.setenv("SURROGATE_MODEL_URI", "models:/nope/7")
    status, body = _answer(_service(monkeypatch).predict(designs=[Design(**GOOD)], level=0.9))
    assert status == 503 and "models:/nope/7" in body["error"]


# ------------------------------------------------------------ campaigns
AUTH = {"authorization": f"Bearer {TOKEN}"}


def _new_campaign(name: str) -> None:
    from surrogate.campaign import Campaign
    from surrogate.objectives import Objective

    Campaign.create(name, Objective("conductivity"))


def _status(name: str) -> dict:
    from surrogate.campaign import Campaign

    return Campaign.load(name).status()


def test_suggest_hands_out_designs_and_a_retry_gets_the_same_batch(client):
    _new_campaign("films-1")
    response = _post(client, "/suggest", {"campaign": "films-1", "n": 3, "client_id": "robot-a"}, AUTH)
    assert response.status_code == 200, response.text
    suggestions = response.json()["suggestions"]
    assert len({s["trial"] for s in suggestions}) == 3
    assert all(
        s["buffer"] in ("none", "llto_ncm", "sio2", "lipon") and s["client_id"] == "robot-a" for s in suggestions
    )
    again = _post(client, "/suggest", {"campaign": "films-1", "n": 3, "client_id": "robot-a"}, AUTH).json()
    assert [s["trial"] for s in again["suggestions"]] == [s["trial"] for s in suggestions]
    assert _status("films-1")["pending"] == 3


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"campaign": "no-such-campaign"}, 404, "campaign"),
        ({"campaign": "films-1", "n": 0}, 400, "n"),
        ({"campaign": "films-1", "n": 101}, 400, "n"),
        ({"campaign": ""}, 400, "campaign"),
        ({"n": 2}, 400, "campaign"),
        ({"campaign": "films-1", "client_id": ""}, 400, "client_id"),
        ({"campaign": "films-1", "n": True}, 400, "n"),
        ({"campaign": "films-1", "n": "2"}, 400, "n"),
        ({"campaign": "films-1", "n": 2.0}, 400, "n"),
        ({"campaign": "films-1", "n": 10**30}, 400, "n"),
        ({"campaign": "films\u0000-1"}, 400, "campaign"),
        ({"campaign": "films-1", "client_id": "robot\n1"}, 400, "client_id"),
        ({"campaign": 7}, 400, "campaign"),
        ({"campaign": "films-1", "count": 2}, 400, "count"),
    ],
)
def test_suggest_bad_requests(client, body, status, field):
    response = _post(client, "/suggest", body, AUTH)
    assert response.status_code == status, response.text
    assert field in _fields(response)


def test_observe_records_results_and_lists_every_bad_row_writing_nothing(client):
    _new_campaign("films-2")
    suggestions = _post(client, "/suggest", {"campaign": "films-2", "n": 2}, AUTH).json()["suggestions"]
    rows = [
        {k: s[k] for k in ("trial", "buffer", "anneal_temp_c", "test_temp_c")} | {"conductivity_s_cm": 1e-5}
        for s in suggestions
    ]
    bad = [
        rows[0] | {"conductivity_s_cm": -1.0},
        rows[1],
        {"buffer": "unobtainium", "anneal_temp_c": 300, "test_temp_c": 25, "conductivity_s_cm": 1e-5},
    ]
    response = _post(client, "/observe", {"campaign": "films-2", "observations": bad}, AUTH)
    assert response.status_code == 400, response.text
    problems = response.json()["detail"]
    assert {p["row"] for p in problems} == {1, 3}
    assert {p["column"] for p in problems} >= {"conductivity_s_cm", "buffer"}
    assert _status("films-2")["observed"] == 0 and _status("films-2")["pending"] == 2

    response = _post(client, "/observe", {"campaign": "films-2", "observations": rows}, AUTH)
    assert response.status_code == 200, response.text
    assert response.json()["observed"] == 2 and sorted(response.json()["trials"]) == sorted(r["trial"] for r in rows)
    assert _status("films-2")["observed"] == 2 and _status("films-2")["pending"] == 0


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"campaign": "nope", "observations": [{"buffer": "sio2"}]}, 404, "campaign"),
        ({"campaign": "films-2", "observations": []}, 400, "observations"),
        ({"campaign": "films-2"}, 400, "observations"),
        ({"campaign": "films-2", "observations": [{"buffer": "sio2"}]}, 400, "anneal_temp_c"),
        ({"campaign": "films-2", "observations": [{**GOOD, "cycles": -5}]}, 400, "cycles"),
        ({"campaign": "films-2", "observations": [{**GOOD, "cycles": 1e20}]}, 400, "cycles"),
        ({"campaign": "films-2", "observations": [{**GOOD, "cycles": 10**30}]}, 400, "cycles"),
        ({"campaign": "films-2", "observations": [{**GOOD, "conductivity_s_cm": True}]}, 400, "conductivity_s_cm"),
        ({"campaign": "films-2", "observations": [{**GOOD, "conductivity_s_cm": "1e-5"}]}, 400, "conductivity_s_cm"),
        ({"campaign": "films-2", "observations": [{**GOOD, "trial": True}]}, 400, "trial"),
        ({"campaign": "films-2", "observations": [{**GOOD, "colour": "blue"}]}, 400, "colour"),
        ({"campaign": "films-2", "observations": [{**GOOD, "status": "maybe"}]}, 400, "status"),
        ({"campaign": "films-2", "observations": "rows"}, 400, "observations"),
    ],
)
def test_observe_bad_requests(client, body, status, field):
    response = _post(client, "/observe", body, AUTH)
    assert response.status_code == status, response.text
    assert field in _fields(response) or field in response.json()["error"]


def test_observe_more_rows_than_the_limit_is_413(client):
    from serving.schemas import MAX_OBSERVATIONS

    rows = [{**GOOD, "conductivity_s_cm": 1e-5}] * (MAX_OBSERVATIONS + 1)
    response = _post(client, "/observe", {"campaign": "films-2", "observations": rows}, AUTH)
    assert response.status_code == 413 and "observations" in _fields(response)


def test_unknown_campaign_404_never_lists_the_other_campaigns(client):
    _new_campaign("secret-project-x")
    for response in (
        _post(client, "/suggest", {"campaign": "nope"}, AUTH),
        _post(client, "/observe", {"campaign": "nope", "observations": [GOOD]}, AUTH),
        client.get("/campaigns/nope", headers=AUTH),
    ):
        assert response.status_code == 404
        assert "secret-project-x" not in response.text and "nope" in response.json()["error"]


def test_library_errors_map_to_their_status(client, monkeypatch):
    from surrogate.campaign import Campaign
    from surrogate.errors import ConflictError, NotFoundError

    _new_campaign("films-conflict")

    def conflict(self, data, source="observations", recorded_by=None):
        raise ConflictError("trial 3 was already observed with another result", trial=3)

    monkeypatch.setattr(Campaign, "observe", conflict)
    response = _post(client, "/observe", {"campaign": "films-conflict", "observations": [GOOD]}, AUTH)
    assert response.status_code == 409 and response.json()["trial"] == 3
    assert "already observed" in response.json()["error"] and response.json()["detail"] == []

    def missing(cls, name, storage=None):
        raise NotFoundError(f"campaign {name!r} does not exist; known campaigns: films-1, films-2")

    monkeypatch.setattr(Campaign, "load", classmethod(missing))
    response = _post(client, "/suggest", {"campaign": "films-1"}, AUTH)
    assert response.status_code == 404 and "films-2" not in response.text


def test_a_refusing_campaign_store_is_a_503_with_retry_after(client, monkeypatch):
    """The database refusing clients or a pool that stays empty (the load probe's 500s at 64 concurrent status
    calls) is the service's trouble, not the client's: 503 with Retry-After, never a 500 or a 400."""
    import optuna
    import sqlalchemy.exc

    from surrogate.campaign import Campaign

    _new_campaign("films-refused")
    refusals = [
        sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("FATAL:  sorry, too many clients already")),
        sqlalchemy.exc.TimeoutError("QueuePool limit of size 5 overflow 10 reached, connection timed out"),
        optuna.exceptions.StorageInternalError("An exception is raised during the commit."),
    ]
    for refusal in refusals:

        def refuse(cls, name, storage=None, refusal=refusal):
            raise refusal

        monkeypatch.setattr(Campaign, "load", classmethod(refuse))
        response = client.get("/campaigns/films-refused", headers=AUTH)
        assert response.status_code == 503, response.text
        assert int(response.headers["retry-after"]) > 0
        assert "campaign store is busy or unreachable" in response.json()["error"]


def test_concurrent_first_campaign_calls_open_one_storage(monkeypatch):
    """A worker's first campaign requests arrive together: they wait for one storage (one connection pool) instead
    of each opening its own (measured before: 67 PostgreSQL connections from 2 workers). A store that cannot be
    opened is a StoreUnavailableError (503), and the next call tries again."""
    import threading
    import time

    import serving.service as service
    import surrogate.storage as storage
    from surrogate.errors import StoreUnavailableError

    monkeypatch.setattr(service, "load_surrogate", lambda: (DOUBLE, dict(DOUBLE_INFO)))
    monkeypatch.setattr(service.gc, "freeze", lambda: None)
    worker = service.Surrogate.inner()
    opened: list[int] = []

    def slow_open(url=None, **kwargs):
        opened.append(threading.get_ident())
        time.sleep(0.3)
        if len(opened) == 1:
            raise InputError("storage: cannot open postgresql://db/x (OperationalError: too many clients already)")
        return object()

    monkeypatch.setattr(storage, "get_storage", slow_open)
    with pytest.raises(StoreUnavailableError, match="campaign store cannot be opened"):
        worker._storage()
    results: list[object] = []
    threads = [threading.Thread(target=lambda: results.append(worker._storage())) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(opened) == 2 and len(results) == 16 and all(r is results[0] for r in results)


def test_an_unexpected_error_is_a_quick_logged_500_with_a_request_id(client, monkeypatch, caplog):
    from surrogate.campaign import Campaign

    def broken(self, n=1, client_id=None):
        raise RuntimeError("database fell over")

    _new_campaign("films-broken")
    monkeypatch.setattr(Campaign, "suggest", broken)
    with caplog.at_level("ERROR", logger="surrogate.service"):
        response = _post(client, "/suggest", {"campaign": "films-broken"}, AUTH)
    body = response.json()
    assert response.status_code == 500 and body["request_id"] and response.headers["x-request-id"] == body["request_id"]
    assert "database fell over" not in response.text  # the cause is logged, not sent
    assert any(body["request_id"] in r.getMessage() and r.exc_info for r in caplog.records)


def test_an_exception_inside_middleware_is_a_500_with_a_request_id_not_a_hang():
    from starlette.testclient import TestClient

    from serving.metrics import MetricsMiddleware
    from serving.middleware import GuardMiddleware
    from serving.timeouts import BodyDeadlineMiddleware

    async def explode(scope, receive, send):
        raise TypeError("a bug before any answer")

    app = MetricsMiddleware(BodyDeadlineMiddleware(GuardMiddleware(explode, token=""), timeout_s=60))  # no lifespan
    response = TestClient(app).get("/anything")
    assert response.status_code == 500 and response.json()["request_id"]


# ------------------------------------------------------------ campaigns over HTTP
def test_campaigns_are_created_listed_and_inspected_over_http(client):
    body = {"name": "http-films", "objective": "rate_x_capacity", "c_rate": 10, "cycles": 300, "warm_start": "embedded"}
    response = _post(client, "/campaigns", body, AUTH)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["campaign"] == "http-films" and created["warm_start_rows"] > 0
    assert created["objective"]["c_rate"] == 10 and created["objective"]["cycles"] == 300
    assert _post(client, "/campaigns", body, AUTH).status_code == 409
    listed = client.get("/campaigns", headers=AUTH).json()["campaigns"]
    assert "http-films" in {c["name"] for c in listed}
    status = client.get("/campaigns/http-films", headers=AUTH).json()
    assert status["campaign"] == "http-films" and status["observed"] == 0 and status["pending"] == 0
    recommended = status["recommended"]  # the model's posterior-mean best, from the warm start and the prior
    assert recommended["lower"] <= recommended["mean"] <= recommended["upper"] and recommended["level"] == 0.9
    assert recommended["design"]["buffer"] in {"none", "llto_ncm", "sio2", "lipon"}
    suggestions = _post(client, "/suggest", {"campaign": "http-films", "n": 1}, AUTH).json()["suggestions"]
    assert client.get("/campaigns/http-films", headers=AUTH).json()["pending"] == 1 and len(suggestions) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "objective": "happiness"}, "objective"),
        ({"name": "", "objective": "conductivity"}, "name"),
        ({"name": "nul\u0000name", "objective": "conductivity"}, "name"),
        ({"name": "x", "objective": "conductivity", "cycles": True}, "cycles"),
        ({"name": "x", "objective": "conductivity", "seed": -1}, "seed"),
        ({"name": "x", "objective": "conductivity", "warm_start": "/etc/passwd"}, "warm_start"),
        ({"name": "x", "objective": "conductivity", "space": {"anneal_temp_c": [400, 300]}}, "anneal_temp_c"),
        ({"name": "x", "objective": "conductivity", "owner": "me"}, "owner"),
    ],
)
def test_bad_campaign_creation_is_400_and_creates_nothing(client, body, field):
    response = _post(client, "/campaigns", body, AUTH)
    assert response.status_code == 400, response.text
    assert field in _fields(response) or field in response.json()["error"]
    assert "x" not in {c["name"] for c in client.get("/campaigns", headers=AUTH).json()["campaigns"]}


# ------------------------------------------------------------ search
def test_search_single_objective_returns_the_best_designs_with_flags(client):
    body = {"objectives": [{"kind": "conductivity", "test_temp_c": 25}], "n_trials": 30, "top": 3}
    response = _post(client, "/search", body, AUTH)
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert result["n_trials"] == 30 and result["storage"] == "in-memory"
    designs = result["designs"]
    assert 1 <= len(designs) <= 3
    assert all("extrapolation" in d and d["test_temp_c"] == 25 for d in designs)
    scores = [d[result["objectives"][0]["name"]] for d in designs]
    assert scores == sorted(scores, reverse=True)
    assert "not measurements" in response.json()["notice"]


def test_search_pareto_set_respects_the_constraints(client):
    body = {
        "objectives": [{"kind": "conductivity"}, {"kind": "capacity_retention", "cycles": 300}],
        "space": {"buffers": ["SiO2", "none"], "max_anneal_temp_c": 350},
        "n_trials": 40,
    }
    response = _post(client, "/search", body, AUTH)
    assert response.status_code == 200, response.text
    designs = response.json()["result"]["designs"]
    assert designs and all(d["anneal_temp_c"] <= 350 and d["buffer"] in ("sio2", "none") for d in designs)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"objectives": [{"kind": "conductivity"}], "n_trials": 501}, "n_trials"),
        ({"objectives": [{"kind": "happiness"}]}, "kind"),
        ({"objectives": []}, "objectives"),
        ({"objectives": [{"kind": "conductivity", "c_rate": "NaN"}]}, "c_rate"),
        ({"objectives": [{"kind": "conductivity"}], "space": {"anneal_temp_c": [400, 300]}}, "anneal_temp_c"),
        ({"objectives": [{"kind": "conductivity"}], "space": {"buffers": ["kryptonite"]}}, "buffers"),
    ],
)
def test_search_bad_requests_are_400(client, body, field):
    response = _post(client, "/search", body, AUTH)
    assert response.status_code == 400, response.text
    assert field in _fields(response) or field in response.json()["error"]


# ------------------------------------------------------------ schemathesis
@pytest.mark.slow
def test_schemathesis_with_the_token_finds_no_server_error_and_no_answer_outside_the_schema(client):
    """Generated requests for every operation of /docs.json, sent with the token: never a 5xx, and every answer
    (2xx and 4xx alike) matches its documented schema (the document is read as the OpenAPI 3.0 it declares)."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import response_schema_conformance

    _new_campaign("fuzzed")
    document = client.get("/docs.json").json()
    assert document["openapi"].startswith("3.0")
    schema = schemathesis.openapi.from_dict(document)
    statuses: dict[tuple[str, str], set[int]] = {}

    async def app(scope, receive, send):  # the module's running app; its lifespan belongs to the `client` fixture
        if scope["type"] != "lifespan":
            return await client.app(scope, receive, send)
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})

    for result in schema.get_all_operations():
        operation = result.ok()
        examples = 3 if operation.path == "/search" else 25

        @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=operation.as_strategy())
        def run(case):
            response = case.call(app=app, headers=AUTH, timeout=120)  # no fail on a short timeout at load 10
            case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])
            statuses.setdefault((case.method.lower(), case.path), set()).add(response.status_code)

        run()
    assert {("post", "/predict"), ("get", "/model_info"), ("post", "/suggest"), ("post", "/observe")} <= set(statuses)
    assert ("post", "/ingest") in statuses and ("get", "/campaigns/{name}") in statuses
    assert 200 in statuses[("post", "/predict")] and 200 in statuses[("get", "/model_info")], statuses


# ------------------------------------------------------------ CLI
@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["serve", "--port", "0"], "--port"),
        (["serve", "--port", "70000"], "--port"),
        (["serve", "--workers", "0"], "--workers"),
        (["serve", "--model", " "], "--model"),
    ],
)
def test_serve_command_refuses_bad_options_with_exit_2(capsys, argv, words):
    from surrogate.cli import main

    assert main(argv) == 2
    assert words in capsys.readouterr().err


def test_serve_build_without_a_trained_model_says_to_train(tmp_stores, capsys, monkeypatch):
    from surrogate.cli import main

    monkeypatch.setenv("BENTOML_HOME", str(tmp_stores / "bentoml"))
    assert main(["serve", "--build"]) == 2
    assert "surrogate train" in capsys.readouterr().err
    assert not (tmp_stores / "bentoml" / "models").exists() or not any((tmp_stores / "bentoml" / "models").iterdir())


# ------------------------------------------------------------ batching
@pytest.mark.parametrize("inline_rows", [0, 200])
def test_batcher_answers_concurrent_requests_in_fewer_calls_with_the_rows_of_separate_calls(inline_rows):
    import pandas as pd

    from serving.service import Batcher

    calls: list[int] = []

    class Counting:
        def predict_columns(self, designs, level):
            calls.append(len(designs))
            return DOUBLE.predict_columns(designs, level=level)

    batches = [design_batch([{**GOOD, "test_temp_c": 20.0 + i}, {**GOOD, "buffer": "lipon"}]) for i in range(12)]

    async def run():
        batcher = Batcher(Counting(), max_designs=8, inline_rows=inline_rows)
        return await asyncio.gather(*(batcher.predict(b, 0.9) for b in batches), batcher.predict(batches[0], 0.5))

    answers = asyncio.run(run())
    assert sum(calls) == 26 and len(calls) < 13 and max(calls) <= 8
    for batch, answer in zip(batches, answers, strict=False):
        pd.testing.assert_frame_equal(pd.DataFrame(answer), DOUBLE.predict(batch, level=0.9))
    pd.testing.assert_frame_equal(pd.DataFrame(answers[-1]), DOUBLE.predict(batches[0], level=0.5))


# ------------------------------------------------------------ no private BentoML API
def test_serving_imports_no_private_bentoml_module():
    from pathlib import Path

    for path in (Path(__file__).resolve().parents[1] / "serving").glob("*.py"):
        assert "bentoml._internal" not in path.read_text(), path.name


def test_access_log_is_off_unless_asked_for():
    import serving.service as service

    assert service.Surrogate.config["logging"]["access"]["enabled"] is False


# ------------------------------------------------------------ serve --build from an installed package
def _installed_copy(site) -> None:
    """The project's packages copied to ``site`` as a wheel would install them (no pyproject, no checkout)."""
    import shutil
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for package in ("surrogate", "serving"):
        shutil.copytree(root / package, site / package, ignore=shutil.ignore_patterns("__pycache__"))


def test_build_context_is_made_from_the_installed_packages(tmp_path):
    import subprocess
    import sys

    site, context = tmp_path / "site-packages", tmp_path / "context"
    site.mkdir()
    context.mkdir()
    _installed_copy(site)
    script = (
        "import sys, pathlib, surrogate; from surrogate.cli.serve import build_context; "
        "print(surrogate.__file__); print(build_context(pathlib.Path(sys.argv[1])))"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    done = subprocess.run(
        [sys.executable, "-c", script, str(context)], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    imported_from, bentofile = done.stdout.split()
    assert imported_from.startswith(str(site))
    assert bentofile == str(context / "serving" / "bentofile.yaml")
    for name in ("surrogate/cli/serve.py", "surrogate/data", "serving/service.py", "serving/bentofile.yaml"):
        assert (context / name).exists(), name
    assert not list(context.rglob("__pycache__"))


def test_build_context_without_the_bentofile_says_so(tmp_path, monkeypatch):
    import importlib.util
    import shutil

    from surrogate.cli.serve import build_context

    real_find_spec = importlib.util.find_spec
    fake = tmp_path / "fake"
    fake.mkdir()
    shutil.copytree(__import__("pathlib").Path(__file__).resolve().parents[1] / "serving", fake / "serving")
    (fake / "serving" / "bentofile.yaml").unlink()

    def find_spec(name, *args):
        spec = real_find_spec(name, *args)
        if name == "serving":
            spec.submodule_search_locations = [str(fake / "serving")]
        return spec

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(InputError, match="bentofile.yaml is missing"):
        build_context(tmp_path / "context")


@pytest.mark.slow
def test_serve_build_makes_a_bento_from_an_installed_copy(tmp_path):
    """``surrogate serve --build`` run from a copy of the packages outside the checkout builds a Bento with the model."""
    import os
    import subprocess
    import sys

    import mlflow

    from surrogate import tracking

    site = tmp_path / "site-packages"
    site.mkdir()
    _installed_copy(site)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(
        MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
        BENTOML_HOME=str(tmp_path / "bentoml"),
        SURROGATE_HOME=str(tmp_path),
        PYTHONPATH=os.pathsep.join([str(site), str(__import__("pathlib").Path(__file__).parent)]),
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", env["MLFLOW_TRACKING_URI"])
        mp.chdir(tmp_path)
        tracking.configure_mlflow("build-test")
        with mlflow.start_run():
            uri, _ = tracking.log_surrogate(DOUBLE, register=False)
    command = [sys.executable, "-m", "surrogate.cli", "serve", "--build", "--model", uri, "--json"]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    built = json.loads(done.stdout)
    assert built["bento"].startswith("llto-surrogate:") and built["model"].startswith("llto-surrogate:")
    bentos = list((tmp_path / "bentoml" / "bentos" / "llto-surrogate").iterdir())
    source = next(b for b in bentos if b.is_dir()) / "src"
    assert (source / "serving" / "service.py").is_file() and (source / "surrogate" / "data").is_dir()


# ------------------------------------------------------------ docs/service.md
def _documented_calls() -> list[tuple[str, str, str | None, bool]]:
    """Every curl call of docs/service.md: method, path, body, whether it sends the token."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "service.md").read_text().replace("\\\n", " ")
    calls = []
    for line in text.splitlines():
        if not line.strip().startswith("curl "):
            continue
        path = re.search(r"localhost:3000(/\S*)", line).group(1)
        body = re.search(r"-d '(.*?)'", line)
        method = "POST" if "-X POST" in line else "GET"
        calls.append((method, path, body.group(1) if body else None, "Authorization: Bearer" in line))
    return calls


def test_every_example_of_the_service_doc_works_as_shown(client):
    calls = _documented_calls()
    assert {path for _, path, _, _ in calls} >= {
        "/predict",
        "/model_info",
        "/campaigns",
        "/suggest",
        "/observe",
        "/search",
    }
    fresh = f"films-{uuid.uuid4().hex[:8]}"  # the module's other tests (schemathesis) may have made "films"
    for method, path, body, with_token in calls:
        # the doc's campaign is "films-service" (the README's CLI session uses "films", its HTTP block "films-http")
        path = re.sub(r"/films(-service)?\b", f"/{fresh}", path)
        body = body and re.sub(r'"films(-service)?"', f'"{fresh}"', body)
        headers = dict(AUTH) if with_token else {}
        if body is not None:
            headers["content-type"] = "application/json"
        response = client.request(method, path, content=body, headers=headers)
        assert response.status_code in (200, 201), (method, path, response.text[:500])


# ------------------------------------------------------------ surrogate dashboard
def test_dashboard_without_a_store_exits_2_and_creates_nothing(tmp_path, monkeypatch, capsys):
    import sqlite3

    from surrogate.cli import main

    monkeypatch.delenv("SURROGATE_OPTUNA_STORAGE", raising=False)
    monkeypatch.setenv("SURROGATE_HOME", str(tmp_path / "home"))
    assert main(["dashboard"]) == 2
    assert "campaign create" in capsys.readouterr().err and not (tmp_path / "home").exists()
    assert main(["dashboard", "--storage", f"sqlite:///{tmp_path / 'missing.db'}"]) == 2
    assert not (tmp_path / "missing.db").exists()
    sqlite3.connect(tmp_path / "other.db").execute("create table t (x int)").connection.close()
    assert main(["dashboard", "--storage", f"sqlite:///{tmp_path / 'other.db'}"]) == 2
    assert "no Optuna studies" in capsys.readouterr().err
    assert main(["dashboard", "--port", "0"]) == 2


def test_dashboard_finds_an_existing_campaign_store(tmp_path, monkeypatch):
    from surrogate.cli.dashboard import existing_storage_url

    monkeypatch.delenv("SURROGATE_OPTUNA_STORAGE", raising=False)
    monkeypatch.setenv("SURROGATE_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    _new_campaign("dash")  # the local default store
    assert existing_storage_url(None) == f"sqlite:///{(tmp_path / 'optuna.db').resolve()}"
