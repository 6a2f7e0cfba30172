"""The MLflow UI in a real browser (Debian chromium driven by Playwright): what a scientist sees of a training run.

`surrogate ui` runs on a store with one trained champion. The checks: the experiment page (at the
address `surrogate train` and `surrogate ui` print) shows the training run in the model-training view,
not the GenAI view; the run page shows the run's description (champion per target in physical
units); the Models page shows `llto-surrogate` with alias `@champion`. Screenshots go to
``$SURROGATE_TEST_ARTIFACTS`` (default ``tests/artifacts/``).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import BROWSER_TIMEOUT_MS, CHROMIUM_PATH, needs_chromium

pytestmark = [pytest.mark.server, pytest.mark.slow, needs_chromium]

CHROMIUM = str(CHROMIUM_PATH)
PAGE_TIMEOUT_MS = BROWSER_TIMEOUT_MS


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def mlflow_ui(use_trained_store) -> Iterator[tuple[str, dict]]:
    """`surrogate ui` on the session's trained store; yields (base URL, the training document)."""
    folder, document = use_trained_store
    port = _free_port()
    ui = subprocess.Popen(
        [sys.executable, "-m", "surrogate.cli", "ui", "--port", str(port)],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, so the server and its helpers stop together
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600  # liveness limit only
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2):
                    break
            except OSError:
                assert ui.poll() is None, f"surrogate ui exited early: {ui.stderr.read()[-2000:]}"
                assert time.monotonic() < deadline, "the MLflow UI never answered /health"
                time.sleep(0.5)
        yield base, document
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        try:
            ui.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(ui.pid, signal.SIGKILL)
            ui.wait()


@pytest.fixture
def browser_page():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1300})
        page.set_default_timeout(PAGE_TIMEOUT_MS)
        try:
            yield page
        finally:
            browser.close()


def _close_announcement(page) -> None:
    """Close MLflow's "new Model Registry UI" announcement if it covers the page."""
    dialog = page.get_by_role("dialog")
    if dialog.count():
        dialog.get_by_role("button", name="Close").first.click()
        dialog.first.wait_for(state="hidden")
        page.wait_for_timeout(1000)  # the backdrop fades out after the dialog is gone


def test_mlflow_ui_shows_the_training_run_its_description_and_the_champion(mlflow_ui, browser_page, test_artifacts):
    from playwright.sync_api import expect

    from surrogate.tracking import ML_VIEW_QUERY, experiment_url

    expect.set_options(timeout=PAGE_TIMEOUT_MS)
    base, document = mlflow_ui
    page = browser_page
    shots = test_artifacts

    # the experiment, at the address `surrogate train` prints: the model-training view with the run
    page.goto(experiment_url(base, document["experiment_id"]))
    expect(page.get_by_role("link", name=re.compile(r"^train .* rows\)")).first).to_be_visible()  # named after its data
    expect(page.get_by_text("Runs", exact=True).first).to_be_visible()
    assert "workflowType=machine_learning" in page.url and "/runs" in page.url
    page.screenshot(path=shots / "mlflow_experiment.png")

    # the run: its description names the champion per target, in physical units
    page.goto(experiment_url(base, document["experiment_id"], document["run_id"]))
    description = page.get_by_text("a champion model per target", exact=False).first
    expect(description).to_be_visible()
    expect(page.get_by_text("on σ in S/cm", exact=False).first).to_be_visible()
    body = page.inner_text("body")
    assert "capacity_retention (fraction of initial capacity)" in body
    page.get_by_text("Description", exact=True).first.scroll_into_view_if_needed()
    show_more = page.get_by_text("Show more", exact=True)
    if show_more.count():  # the UI folds long descriptions
        show_more.first.click()
    if "CV coverage" in document.get("coverage_warnings", {}).get("conductivity_s_cm", ""):
        expect(page.get_by_text("Warning:", exact=False).first).to_be_visible()
    page.screenshot(path=shots / "mlflow_run.png")

    # the registry: llto-surrogate with alias @champion
    page.goto(f"{base}/#/models?{ML_VIEW_QUERY}")
    expect(page.get_by_role("link", name="llto-surrogate").first).to_be_visible()
    expect(page.get_by_text("champion", exact=False).first).to_be_visible()
    _close_announcement(page)
    page.screenshot(path=shots / "mlflow_models.png")

    # the model version page shows its description too, with the version number
    version = document["registered_model"]["version"]
    page.goto(f"{base}/#/models/llto-surrogate/versions/{version}?{ML_VIEW_QUERY}")
    expect(page.get_by_text(f"llto-surrogate version {version}", exact=False).first).to_be_visible()
    expect(page.get_by_text("a champion model per target", exact=False).first).to_be_visible()
    page.screenshot(path=shots / "mlflow_model_version.png")
