"""The browser tests' rule: without chromium they skip and say why; with ``CI=true`` they run (and fail).

Each check runs pytest in a fresh process with ``SURROGATE_TEST_CHROMIUM`` naming a binary that does not exist, so
it holds on a machine that has chromium too. Skipping happens before any fixture, so no server starts.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
BROWSER_FILES = sorted(str(path) for path in TESTS.glob("test_browser_*.py") if path.name != Path(__file__).name)
MISSING = "/nonexistent/chromium"


def _pytest(args: list[str], folder: Path, ci: bool) -> subprocess.CompletedProcess[str]:
    """``python -m pytest ARGS -n 0 -rs`` in a fresh process: no chromium at ``MISSING``; ``CI=true`` if ``ci``."""
    env = {k: v for k, v in os.environ.items() if k != "CI" and not k.startswith(("PYTEST_", "SURROGATE_TEST_"))}
    env.update(SURROGATE_TEST_CHROMIUM=MISSING, SURROGATE_TEST_ARTIFACTS=str(folder / "artifacts"))
    if ci:
        env["CI"] = "true"
    command = [sys.executable, "-m", "pytest", *args, "-n", "0", "-rs", "-p", "no:cacheprovider", "-o", "addopts="]
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=600)


def test_without_chromium_every_browser_test_skips_and_says_why(tmp_path):
    assert len(BROWSER_FILES) >= 3
    done = _pytest([*BROWSER_FILES, "--rootdir", str(TESTS.parent)], tmp_path, ci=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    summary = done.stdout.strip().splitlines()[-1]
    assert "skipped" in summary and "passed" not in summary and "failed" not in summary and "error" not in summary
    reasons = [line for line in done.stdout.splitlines() if line.startswith("SKIPPED")]
    assert reasons and all(f"{MISSING} is not installed (apt-get install chromium)" in line for line in reasons)
    assert all("with CI=true this test runs and fails" in line for line in reasons)


def test_with_ci_true_a_browser_test_runs_even_without_chromium(tmp_path):
    (tmp_path / "test_needs_a_browser.py").write_text(
        f"import sys\nsys.path.insert(0, {str(TESTS)!r})\nfrom conftest import needs_chromium\n\n\n"
        "@needs_chromium\ndef test_needs_a_browser():\n    assert False, 'ran without chromium'\n"
    )
    skipped = _pytest(["test_needs_a_browser.py"], tmp_path, ci=False)
    assert "1 skipped" in skipped.stdout, skipped.stdout[-2000:]
    ran = _pytest(["test_needs_a_browser.py"], tmp_path, ci=True)
    assert ran.returncode == 1 and "ran without chromium" in ran.stdout, ran.stdout[-2000:]
