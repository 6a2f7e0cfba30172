"""The service's own /metrics (issue 18, finding 1): route-template labels, a bounded number of series.

In-process (ASGI): thousands of distinct unauthenticated paths leave the number of series in the registry, and
the ``/metrics`` text, unchanged. The real-server version (worker memory) is in ``test_service_server.py``.
"""

from __future__ import annotations

import re
import uuid
import warnings

import pytest

from serving.metrics import REQUESTS, method_label, metrics_registry, route_template

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
TOKEN = "s3cret-token"  # as tests/test_service.py: one app per process (conftest.surrogate_asgi_app) reads it once


def test_route_template_keeps_routes_and_folds_the_rest():
    assert route_template("/predict") == "/predict"
    assert route_template("/campaigns") == "/campaigns"
    assert route_template("/ingest") == "/ingest"
    assert route_template("/campaigns/alpha") == "/campaigns/{name}"
    assert route_template("/campaigns/alpha/extra") == "other"
    assert route_template("/etc/passwd") == "other"
    assert route_template("/static_content/swagger-ui.css") == "/static_content/{file}"
    assert method_label("POST") == "POST" and method_label("BREW") == "other"


def _series_count() -> int:
    return sum(len(metric.samples) for metric in metrics_registry().collect())


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from conftest import surrogate_asgi_app
    from starlette.testclient import TestClient
    from test_service import DOUBLE, DOUBLE_INFO

    import serving.service as service

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENTOML_HOME", str(tmp_path_factory.mktemp("bentoml")))
        mp.setenv("SURROGATE_HOME", str(tmp_path_factory.mktemp("home")))
        mp.setenv("SURROGATE_API_TOKEN", TOKEN)
        mp.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
        mp.setattr(service, "load_surrogate", lambda: (DOUBLE, dict(DOUBLE_INFO)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with TestClient(surrogate_asgi_app(), raise_server_exceptions=False) as test_client:
                yield test_client


def _stray(client, count: int) -> None:
    for _ in range(count):
        name = uuid.uuid4().hex
        assert client.get(f"/campaigns/{name}").status_code == 401
        assert client.get(f"/no/such/{name}").status_code in (401, 404)
        assert client.request("BREW", f"/x/{name}").status_code in (404, 405)


def test_thousands_of_distinct_unauthenticated_paths_add_no_series(client):
    _stray(client, 50)  # every label combination of the stray requests (and of a scrape) exists now
    client.get("/metrics", headers={"authorization": f"Bearer {TOKEN}"})
    before = _series_count()
    text_before = client.get("/metrics", headers={"authorization": f"Bearer {TOKEN}"}).text
    _stray(client, 1000)
    after = _series_count()
    response = client.get("/metrics", headers={"authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    assert after == before
    assert len(response.text.splitlines()) == len(text_before.splitlines())
    assert 'route="/campaigns/{name}"' in response.text and 'route="other"' in response.text
    assert re.search(r"[0-9a-f]{32}", response.text) is None  # no path (and no campaign name) is shown
    counted = REQUESTS.labels("/campaigns/{name}", "GET", "401")._value.get()
    assert counted >= 1050


def test_no_url_is_traced_so_no_span_outlives_its_request():
    """BentoML keeps each traced request's span alive for its 60 s timeout (benchmarks/rss_growth.py: ~5 MiB per
    1,000 requests); the service excludes every URL from BentoML's OpenTelemetry middleware."""
    import serving.service as service

    excluded = service.Surrogate.config["tracing"]["excluded_urls"]
    assert all(re.fullmatch(excluded, path) for path in ("/predict", "/campaigns/x", "/readyz", "/metrics"))


def test_bentomls_own_metrics_are_off(client):
    import serving.service as service

    assert service.Surrogate.config["metrics"]["enabled"] is False
    text = client.get("/metrics", headers={"authorization": f"Bearer {TOKEN}"}).text
    assert "bentoml_service_request" not in text and "endpoint=" not in text
    assert client.get("/metrics").status_code == 401  # the traffic is the token holder's to see
