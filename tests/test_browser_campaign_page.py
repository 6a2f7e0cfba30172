"""The campaign view a scientist reads, in Chromium: ``surrogate dashboard``'s own page of a campaign.

A real ``surrogate dashboard`` on a campaign warm-started from the embedded data, with observations and pending
suggestions; Debian's ``/usr/bin/chromium`` driven by Playwright. The page must say the embedded data is a
reconstruction from a paper, show the objective's unit, the recommended design with its 90% interval (the numbers
of :meth:`Campaign.recommendation`) and the pending suggestions as pending. Screenshot: ``campaign-page.png`` in
``$SURROGATE_TEST_ARTIFACTS`` (default ``tests/artifacts/``).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import test_browser_service
from conftest import BROWSER_TIMEOUT_MS, needs_chromium
from test_service_server import ROOT, _free_port, start_server, stop_server, wait_for_answer

pytestmark = [
    pytest.mark.server,
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    needs_chromium,
]

ARTIFACTS = test_browser_service.ARTIFACTS


@pytest.fixture(scope="module")
def campaign_store(tmp_path_factory):
    """A store with campaign ``films``: embedded warm start, 4 observations, 1 failed, 2 pending: (folder, storage URL)."""
    from surrogate.campaign import Campaign, read_observations
    from surrogate.dataset import DATASET_FILENAME, load_default_dataset
    from surrogate.objectives import Objective

    folder = tmp_path_factory.mktemp("campaign-page")
    storage = f"sqlite:///{folder / 'campaigns.db'}"
    campaign = Campaign.create(
        "films",
        Objective("rate_x_capacity", c_rate=10, cycles=300),
        storage=storage,
        warm_start=load_default_dataset(),
        warm_start_source=f"embedded: {DATASET_FILENAME} (reconstruction, not measured)",
    )
    campaign.observe(read_observations(ROOT / "examples" / "observations.csv"), "observations.csv")
    campaign.suggest(2, client_id="robot-1")
    return folder, storage


@pytest.fixture(scope="module")
def dashboard(campaign_store):
    """A real ``surrogate dashboard`` on the store; its base URL."""
    folder, storage = campaign_store
    port = _free_port()
    surrogate = shutil.which("surrogate", path=str(Path(sys.executable).parent))
    log = folder / "dashboard.log"
    process = start_server(
        [surrogate, "dashboard", "--port", str(port), "--storage", storage], dict(os.environ), folder, log
    )
    try:
        wait_for_answer(f"http://127.0.0.1:{port}/campaigns", process, log, want=200)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_server(process)


browser = test_browser_service.browser  # the module-scoped Chromium of the Swagger UI tests


def test_the_campaign_page_shows_units_the_recommended_interval_and_pending_suggestions(
    browser, dashboard, campaign_store
):
    from surrogate.campaign import Campaign

    _, storage = campaign_store
    status = Campaign.load("films", storage).status()
    page = browser.new_page(viewport={"width": 1280, "height": 1600})
    page.set_default_timeout(BROWSER_TIMEOUT_MS)
    hosts: list[str] = []
    page.on("request", lambda request: hosts.append(urlsplit(request.url).hostname or request.url))
    page.goto(f"{dashboard}/")  # the index redirects to the list of campaigns
    page.get_by_role("link", name="films").click()
    page.locator("h1").wait_for()  # BROWSER_TIMEOUT_MS: the page fits the campaign's model first
    assert page.locator("h1").inner_text() == "Campaign films"

    reconstruction = page.locator("#reconstruction").inner_text()
    assert "reconstruction from a paper" in reconstruction and "Tan et al., Nanomaterials 2021" in reconstruction
    assert "not measurements" in reconstruction
    assert f"{status['warm_start_rows']} rows from embedded" in page.locator("#warm-start").inner_text()

    unit = status["objective"]["unit"]
    assert f"Unit of the objective: {unit}" in page.locator("#objective").inner_text()

    recommended = status["recommended"]
    design = recommended["design"]
    section = page.locator("#recommended").inner_text()
    assert design["buffer"] in section
    assert (
        f"{round(design['anneal_temp_c'], 1):g} °C" in section and f"{round(design['test_temp_c'], 1):g} °C" in section
    )
    assert "90% interval" in section
    interval = page.locator("#interval").inner_text()
    assert interval == f"{recommended['lower']:.4g} to {recommended['upper']:.4g} {unit}"

    rows = page.locator("#pending tr").all_inner_texts()[1:]  # after the header
    pending = status["pending_suggestions"]
    assert len(pending) == 2 and len(rows) == len(pending)
    for row, suggestion in zip(rows, pending, strict=True):
        cells = row.split("\t")
        assert cells[0].strip() == str(suggestion["trial"]) and cells[1].strip() == "pending"
        assert "robot-1" in row
    assert "Running" not in page.locator("#pending").inner_text()

    page.screenshot(path=str(ARTIFACTS / "campaign-page.png"), full_page=True)
    assert hosts and set(hosts) == {"127.0.0.1"}, sorted(set(hosts))
    page.close()


def test_optuna_dashboard_still_answers_beside_the_pages(browser, dashboard):
    page = browser.new_page()
    page.set_default_timeout(BROWSER_TIMEOUT_MS)
    page.goto(f"{dashboard}/dashboard")
    page.get_by_text("films").first.wait_for()
    page.close()
