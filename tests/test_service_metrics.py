"""Route-template labels for /metrics (issue 18, finding 1): the pure relabelling, without a server."""

from serving.metrics import bounded_metrics_text, route_template

RAW = """# HELP bentoml_service_request_total Multiprocess metric
# TYPE bentoml_service_request_total counter
bentoml_service_request_total{endpoint="/campaigns/alpha",http_response_code="404",service_name="s"} 2.0
bentoml_service_request_total{endpoint="/campaigns/beta",http_response_code="404",service_name="s"} 3.0
bentoml_service_request_total{endpoint="/x/1",http_response_code="404",service_name="s"} 1.0
bentoml_service_request_total{endpoint="/x/2",http_response_code="404",service_name="s"} 1.0
bentoml_service_request_total{endpoint="/predict",http_response_code="200",service_name="s"} 7.0
bentoml_service_last_request_timestamp{endpoint="/x/1",service_name="s"} 100.0
bentoml_service_last_request_timestamp{endpoint="/x/2",service_name="s"} 250.0
python_info{implementation="CPython"} 1.0
"""


def test_route_template_keeps_routes_and_folds_the_rest():
    assert route_template("/predict") == "/predict"
    assert route_template("/campaigns") == "/campaigns"
    assert route_template("/campaigns/alpha") == "/campaigns/{name}"
    assert route_template("/campaigns/alpha/extra") == "other"
    assert route_template("/etc/passwd") == "other"


def test_bounded_metrics_text_merges_samples_and_hides_names():
    text = bounded_metrics_text(RAW)
    assert "alpha" not in text and "beta" not in text and "/x/" not in text
    lines = text.splitlines()
    assert lines[:2] == RAW.splitlines()[:2]
    assert (
        'bentoml_service_request_total{endpoint="/campaigns/{name}",http_response_code="404",service_name="s"} 5.0'
        in lines
    )
    assert 'bentoml_service_request_total{endpoint="other",http_response_code="404",service_name="s"} 2.0' in lines
    assert 'bentoml_service_request_total{endpoint="/predict",http_response_code="200",service_name="s"} 7.0' in lines
    assert 'bentoml_service_last_request_timestamp{endpoint="other",service_name="s"} 250.0' in lines
    assert 'python_info{implementation="CPython"} 1.0' in lines
