"""The campaign page's HTML from a status document (fast; the browser test is test_browser_campaign_page.py)."""

from __future__ import annotations

from surrogate.campaign_page import RECONSTRUCTION_NOTE, campaign_html, campaigns_html, design_text


def _status(**changes):
    status = {
        "campaign": "films",
        "objective": {
            "kind": "rate_x_capacity",
            "c_rate": 10.0,
            "cycles": 300,
            "protocol": "standard",
            "test_temp_c": None,
            "statistic": "mean",
            "name": "rate_retention@10C*capacity_retention@300cyc",
            "unit": "fraction of 0.1 C capacity x fraction of initial capacity",
        },
        "observed": 4,
        "failed": 1,
        "expired": 0,
        "pending": 1,
        "warm_start_rows": 16,
        "warm_start_source": "embedded: llto_tan2021_reconstruction.csv (reconstruction, not measured)",
        "best": {"trial": 4, "buffer": "lipon", "anneal_temp_c": 300.0, "test_temp_c": 60.0, "objective": 0.43286552},
        "recommended": {
            "design": {
                "buffer": "lipon",
                "anneal_temp_c": 320.43,
                "test_temp_c": 47.2444,
                "c_rate": 10.0,
                "cycles": 300,
            },
            "mean": 0.45421,
            "lower": 0.40551,
            "upper": 0.49987,
            "level": 0.9,
            "extrapolation": True,
            "extrapolation_reasons": ["anneal_temp_c=320.43 outside the range measured for lipon [300, 300]"],
            "observations": 4,
        },
        "pending_suggestions": [
            {
                "trial": 7,
                "buffer": "sio2",
                "anneal_temp_c": 402.77,
                "test_temp_c": 37.67,
                "client_id": "<script>alert(1)</script>",
                "lease_expires_at": "2026-12-04T09:59:07+00:00",
            }
        ],
    }
    return status | changes


def test_the_page_gives_units_the_interval_the_warm_start_and_pending_suggestions():
    html = campaign_html(_status())
    assert "Unit of the objective: <b>fraction of 0.1 C capacity x fraction of initial capacity</b>" in html
    assert '<td id="interval">0.4055 to 0.4999 fraction of 0.1 C capacity x fraction of initial capacity</td>' in html
    assert "<th>90% interval</th>" in html
    assert "320.4 °C" in html and "47.2 °C" in html and "300 cycles" in html and "10 C" in html
    assert "Extrapolation: anneal_temp_c=320.43 outside" in html
    assert RECONSTRUCTION_NOTE in html and "Tan et al., Nanomaterials 2021, 11, 989" in RECONSTRUCTION_NOTE
    assert '<td class="pending">pending</td>' in html and "Running</td>" not in html
    assert "0.4329 fraction" in html  # the best reading, 4 significant digits and its unit


def test_the_reconstruction_note_appears_only_with_the_embedded_warm_start():
    assert RECONSTRUCTION_NOTE not in campaign_html(_status(warm_start_source="my_cells.csv"))
    no_warm_start = campaign_html(_status(warm_start_rows=0, warm_start_source=None))
    assert RECONSTRUCTION_NOTE not in no_warm_start and "starts from the physics prior" in no_warm_start


def test_free_text_is_escaped():
    html = campaign_html(_status())
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert 'href="/campaigns/a&amp;b"' in campaigns_html(
        [{"name": "a&b", "objective": "x", "trials": 1, "created": ""}]
    )


def test_design_text_has_units():
    assert design_text({"buffer": "sio2", "anneal_temp_c": 300.0, "test_temp_c": 25.04}) == (
        "sio2, anneal 300 °C, test 25 °C"
    )
