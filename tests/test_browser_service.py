"""What a browser user sees: Swagger UI of a real ``surrogate serve``, and ``surrogate dashboard``, in Chromium.

Debian's ``/usr/bin/chromium`` is driven by Playwright (its own browser download does not work here). The service
serves the test double of ``test_service.py`` fitted on the embedded data, logged to a temporary MLflow store
(as ``test_service_server.py`` does). Screenshots go to ``$SURROGATE_TEST_ARTIFACTS`` (default ``tests/artifacts/``).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from conftest import BROWSER_TIMEOUT_MS, CHROMIUM_PATH, needs_chromium
from test_service_server import ROOT, TOKEN, _free_port, serving_test_double, start_server, wait_for_answer

pytestmark = [
    pytest.mark.server,
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    needs_chromium,
]

CHROMIUM = CHROMIUM_PATH
ARTIFACTS = Path(os.environ.get("SURROGATE_TEST_ARTIFACTS") or ROOT / "tests" / "artifacts")
LOCAL_HOSTS = {"127.0.0.1"}


@pytest.fixture(scope="module")
def browser():
    from playwright import sync_api  # needs_chromium skipped the module without it (unless CI=true)

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """``surrogate serve`` with a token, the test double fitted on the embedded data, a campaign store; its URL."""
    with serving_test_double(tmp_path_factory.mktemp("browser-service"), workers=1) as url:
        yield url


def _open(browser, url: str):
    """A page that records the host of every request it makes."""
    page = browser.new_page(viewport={"width": 1280, "height": 1600})
    page.set_default_timeout(BROWSER_TIMEOUT_MS)
    hosts: list[str] = []
    page.on("request", lambda request: hosts.append(urlsplit(request.url).hostname or request.url))
    page.goto(url)
    return page, hosts


def test_swagger_ui_is_the_projects_own_page_and_asks_nothing_of_other_hosts(browser, service):
    page, hosts = _open(browser, f"{service}/")
    title = page.locator(".swagger-ui .info .title")
    title.wait_for()
    assert "LLTO surrogate service" in title.inner_text()
    assert page.title() == "LLTO surrogate service"
    assert page.locator("button.authorize").count() == 1  # the bearer scheme's Authorize button
    text = page.locator(".swagger-ui").inner_text().lower()
    assert "slack" not in text and "twitter" not in text and "none" not in title.inner_text().lower()
    page.screenshot(path=str(ARTIFACTS / "swagger-ui.png"), full_page=False)
    assert hosts and set(hosts) <= LOCAL_HOSTS, sorted(set(hosts) - LOCAL_HOSTS)
    page.close()


def _try_it_out(page, method: str, path: str):
    """Open an operation in Swagger UI, press "Try it out" and "Execute" with its example; assert a 200."""
    block = page.locator(f".opblock-{method}", has=page.locator(f'.opblock-summary-path[data-path="{path}"]'))
    block.wait_for()
    block.locator(".opblock-summary").click()
    block.locator("button.try-out__btn").click()
    block.locator("button.execute").click()
    status = block.locator(".live-responses-table .response .response-col_status").first
    status.wait_for()
    assert status.inner_text().strip().startswith("200"), block.locator(".live-responses-table").inner_text()
    return block


def test_swagger_try_it_out_on_predict_with_the_shipped_example_gets_200(browser, service):
    page, hosts = _open(browser, f"{service}/")
    block = _try_it_out(page, "post", "/predict")
    assert "extrapolation" in block.locator(".live-responses-table").inner_text()
    block.locator(".live-responses-table").scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "swagger-try-it-out-predict.png"), full_page=False)
    assert set(hosts) <= LOCAL_HOSTS, sorted(set(hosts) - LOCAL_HOSTS)
    page.close()


def test_swagger_authorize_with_the_token_lets_a_browser_list_campaigns(browser, service):
    page, _ = _open(browser, f"{service}/")
    page.locator("button.authorize").click()
    dialog = page.locator(".modal-ux")
    dialog.locator("input").first.fill(TOKEN)
    dialog.locator("button.authorize").first.click()
    dialog.locator("button.btn-done").click()
    _try_it_out(page, "get", "/campaigns")
    page.close()


def test_optuna_dashboard_shows_a_campaign(browser, tmp_path):
    import subprocess

    from surrogate.campaign import Campaign
    from surrogate.objectives import Objective

    storage = f"sqlite:///{tmp_path / 'campaigns.db'}"
    Campaign.create("dashboard-films", Objective("rate_x_capacity", c_rate=10, cycles=300), storage=storage)
    port = _free_port()
    surrogate = shutil.which("surrogate", path=str(Path(sys.executable).parent))
    command = [surrogate, "dashboard", "--port", str(port), "--storage", storage]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    process = start_server(command, env, tmp_path, tmp_path / "dashboard.log")
    try:
        wait_for_answer(f"http://127.0.0.1:{port}/dashboard", process, tmp_path / "dashboard.log", want=200)
        page, _ = _open(browser, f"http://127.0.0.1:{port}/dashboard")
        page.get_by_text("dashboard-films").first.wait_for()
        page.screenshot(path=str(ARTIFACTS / "optuna-dashboard.png"), full_page=False)
        page.close()
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
