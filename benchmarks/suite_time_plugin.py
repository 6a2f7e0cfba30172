"""A pytest plugin that records each test's wall time and CPU time (user + sys), for benchmarks/suite_time.py.

Loaded with ``-p suite_time_plugin`` (``benchmarks/`` on ``PYTHONPATH``); with pytest-xdist it runs in every
worker. Each process appends one JSON line per test to ``$SUITE_TIME_OUT/<worker>.jsonl``:
``{"nodeid", "file", "worker", "wall_s", "cpu_s", "outcome"}``. ``cpu_s`` is this process's CPU plus that of
the children it waited for, during the test's setup, call and teardown (a module or session fixture counts
in the test that first needs it); ``properties`` holds the test's ``record_property`` values that are dicts
(tests/test_docs_commands.py records each block's wall and CPU seconds that way). Processes that outlive their parent (services started with ``setsid ... &``)
are not counted here; benchmarks/suite_time.py counts them in the run's total.
"""

from __future__ import annotations

import json
import os
import resource
import time
from pathlib import Path

import pytest


def _cpu_s() -> float:
    """CPU seconds (user + sys) of this process and of its waited-for children so far."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Time one test's whole protocol (setup, call, teardown) and append its line."""
    folder = os.environ.get("SUITE_TIME_OUT")
    wall_start, cpu_start = time.perf_counter(), _cpu_s()
    outcomes: list[str] = []
    item.stash[_OUTCOMES] = outcomes
    yield
    if not folder:
        return
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    line = {
        "nodeid": item.nodeid,
        "file": item.nodeid.split("::", 1)[0],
        "worker": worker,
        "wall_s": round(time.perf_counter() - wall_start, 3),
        "cpu_s": round(_cpu_s() - cpu_start, 3),
        "outcome": next((o for o in outcomes if o != "passed"), "passed"),
        "properties": {name: value for name, value in item.user_properties if isinstance(value, dict)},
    }
    with open(Path(folder) / f"{worker}.jsonl", "a") as out:
        out.write(json.dumps(line) + "\n")


_OUTCOMES = pytest.StashKey[list]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Remember each phase's outcome (failed / skipped / passed) for the test's line."""
    outcome = yield
    report = outcome.get_result()
    if _OUTCOMES in item.stash and (report.when == "call" or report.outcome != "passed"):
        state = "xfailed" if hasattr(report, "wasxfail") and report.skipped else report.outcome
        item.stash[_OUTCOMES].append(state)
