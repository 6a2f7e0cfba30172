"""The reliability probe's load cases (issue 18, findings 1 and 3) against a real ``surrogate serve`` with 2 workers.

On PostgreSQL (a database of its own, created and dropped by the script):

1. **Concurrent status calls**: one campaign with pending suggestions; 32, then 64 concurrent
   ``GET /campaigns/NAME`` (with the token); the answers by status code, and the count of 5xx.
2. **Distinct unauthenticated paths**: ``--paths`` (default 20,000) requests without a token to
   ``/campaigns/<uuid>`` and ``/no/such/<uuid>``; the workers' resident memory (sum of both, ``VmRSS``) before and
   after, and the size of ``/metrics`` after.

Case 2 runs twice in one run, on two fresh servers: the service as it is (BentoML's HTTP metrics off, the
service's own by route template) and the **baseline**, the old behaviour: BentoML's metrics switched back on with a
BentoML configuration file (``BENTOML_CONFIG``, ``services.llto-surrogate.metrics.enabled: true``), so BentoML's
middleware records every raw path again. ``/metrics`` shows every worker's multiprocess files, BentoML's too, so the
baseline's page holds BentoML's raw-path series.

The service runs without a trained model (campaign routes need none). Writes ``benchmarks/results/load.json``
and ``load.md``. Usage::

    python benchmarks/load.py [--paths 20000] [--postgres postgresql+psycopg2://postgres@127.0.0.1:5432/test]

Memory in MiB; the machine is shared, so the ratios (after/before) are the figures to read.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TOKEN = "load-token"
CAMPAIGN = "load-status"
DEFAULT_POSTGRES = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str, token: str | None = None, timeout: float = 120) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _rss_mib(pids: list[int]) -> float:
    total_kib = 0
    for pid in pids:
        for line in (Path("/proc") / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total_kib += int(line.split()[1])
    return total_kib / 1024


@contextlib.contextmanager
def database(admin_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database for this run (dropped afterwards); its URL."""
    import sqlalchemy

    name = f"hardening_load_{uuid.uuid4().hex[:8]}"
    engine = sqlalchemy.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


@contextlib.contextmanager
def serving(home: Path, storage: str, baseline: bool) -> Iterator[tuple[str, int]]:
    """``surrogate serve --workers 2`` with a token on ``storage``; (url, server pid). ``baseline``: BentoML metrics on."""
    env = dict(
        os.environ,
        MLFLOW_TRACKING_URI=f"sqlite:///{home / 'mlflow.db'}",
        SURROGATE_HOME=str(home),
        SURROGATE_OPTUNA_STORAGE=storage,
        BENTOML_HOME=str(home / "bentoml"),
        SURROGATE_API_TOKEN=TOKEN,
        PYTHONPATH=str(ROOT),
    )
    env.pop("SURROGATE_MODEL_URI", None)
    if baseline:
        config = home / "bentoml-metrics-on.yaml"
        config.write_text("services:\n  llto-surrogate:\n    metrics:\n      enabled: true\n")
        env["BENTOML_CONFIG"] = str(config)
    port = _free_port()
    command = [str(Path(sys.executable).parent / "surrogate"), "serve", "--port", str(port), "--workers", "2"]
    log = open(home / f"server-{'baseline' if baseline else 'now'}.log", "w")  # noqa: SIM115
    process = subprocess.Popen(command, env=env, cwd=home, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited {process.returncode}")
            with contextlib.suppress(OSError):
                if _get(f"{url}/healthz", timeout=5)[0] == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start in 180 s")
            time.sleep(0.5)
        yield url, process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def concurrent_status(url: str, clients: int) -> dict[str, Any]:
    """``clients`` simultaneous ``GET /campaigns/NAME``: answers by status code and the count of 5xx."""
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        answers = list(pool.map(lambda _: _get(f"{url}/campaigns/{CAMPAIGN}", TOKEN), range(clients)))
    counts = Counter(status for status, _ in answers)
    samples = {}  # the first body of each status other than 200, cut to 500 characters
    for status, body in answers:
        if status != 200 and str(status) not in samples:
            samples[str(status)] = body.decode(errors="replace")[:500]
    return {
        "clients": clients,
        "statuses": {str(k): v for k, v in sorted(counts.items())},
        "server_errors": sum(v for k, v in counts.items() if k >= 500),
        "wall_s": round(time.perf_counter() - started, 2),
        "other_answers": samples,
    }


def stray_paths(url: str, count: int, connections: int = 4) -> Counter:
    """``count`` unauthenticated requests to distinct paths over ``connections`` keep-alive connections."""
    host, port = url.removeprefix("http://").split(":")

    def run(share: int) -> Counter:
        seen: Counter = Counter()
        connection = http.client.HTTPConnection(host, int(port), timeout=120)
        try:
            for i in range(share):
                path = f"/campaigns/{uuid.uuid4()}" if i % 2 else f"/no/such/{uuid.uuid4()}"
                connection.request("GET", path)
                response = connection.getresponse()
                response.read()
                seen[response.status] += 1
        finally:
            connection.close()
        return seen

    total: Counter = Counter()
    with ThreadPoolExecutor(connections) as pool:
        for seen in pool.map(run, [count // connections] * connections):
            total.update(seen)
    return total


def memory_case(home: Path, storage: str, paths: int, baseline: bool) -> dict[str, Any]:
    with serving(home, storage, baseline) as (url, pid):
        workers = _children(pid)
        stray_paths(url, 400)  # warm-up
        before = _rss_mib(workers)
        metrics_before = len(_get(f"{url}/metrics", TOKEN)[1])
        started = time.perf_counter()
        statuses = stray_paths(url, paths)
        elapsed = time.perf_counter() - started
        after = _rss_mib(workers)
        scrape_started = time.perf_counter()
        status, page = _get(f"{url}/metrics", TOKEN, timeout=600)
        scrape_s = time.perf_counter() - scrape_started
    return {
        "behaviour": "baseline: BentoML metrics on (raw paths)" if baseline else "now: own metrics by route template",
        "workers": len(workers),
        "paths": paths,
        "answers": {str(k): v for k, v in sorted(statuses.items())},
        "rss_before_mib": round(before, 1),
        "rss_after_mib": round(after, 1),
        "rss_ratio": round(after / before, 3),
        "metrics_status": status,
        "metrics_bytes_before": metrics_before,
        "metrics_bytes_after": len(page),
        "metrics_scrape_s": round(scrape_s, 2),
        "requests_s": round(elapsed, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--paths", type=int, default=20_000, help="distinct unauthenticated paths (default 20000)")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="PostgreSQL URL whose server gets a new database")
    parser.add_argument("--no-baseline", action="store_true", help="skip the BentoML-metrics-on baseline server")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"command": "python benchmarks/load.py " + " ".join(argv or sys.argv[1:]), "cases": {}}
    results["uptime_before"] = Path("/proc/loadavg").read_text().strip()
    with database(args.postgres) as storage, tempfile.TemporaryDirectory(prefix="hardening-load-") as folder:
        home = Path(folder)
        from surrogate.campaign import Campaign
        from surrogate.objectives import Objective
        from surrogate.storage import get_storage

        campaign = Campaign.create(CAMPAIGN, Objective("conductivity"), storage=get_storage(storage))
        campaign.suggest(n=4, client_id="load-robot")  # pending suggestions: status reclaims leases under the lock
        with serving(home, storage, baseline=False) as (url, _):
            results["cases"]["status"] = [concurrent_status(url, n) for n in (32, 64)]
        results["cases"]["paths"] = [memory_case(home, storage, args.paths, baseline=False)]
        if not args.no_baseline:
            results["cases"]["paths"].append(memory_case(home, storage, args.paths, baseline=True))
    results["uptime_after"] = Path("/proc/loadavg").read_text().strip()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "load.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "load.md").write_text(markdown(results))
    print(markdown(results))
    return 0


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "# Load cases of the reliability probe (issue 18)",
        "",
        f"Made by `{results['command']}`; `surrogate serve --workers 2`, campaigns on PostgreSQL, no model loaded. "
        f"Load average before: {results['uptime_before']}; after: {results['uptime_after']}.",
        "",
        "## Concurrent `GET /campaigns/NAME` (a campaign with 4 pending suggestions)",
        "",
        "| clients | answers by status | 5xx | wall s |",
        "|---:|---|---:|---:|",
    ]
    for case in results["cases"]["status"]:
        lines.append(f"| {case['clients']} | {case['statuses']} | {case['server_errors']} | {case['wall_s']} |")
    lines += [
        "",
        "## Distinct unauthenticated paths",
        "",
        "| behaviour | paths | answers | workers' RSS before → after, MiB | ratio | /metrics bytes before → after | "
        "scrape s |",
        "|---|---:|---|---|---:|---|---:|",
    ]
    for case in results["cases"]["paths"]:
        lines.append(
            f"| {case['behaviour']} | {case['paths']} | {case['answers']} | {case['rss_before_mib']} → "
            f"{case['rss_after_mib']} | {case['rss_ratio']} | {case['metrics_bytes_before']} → "
            f"{case['metrics_bytes_after']} | {case['metrics_scrape_s']} |"
        )
    lines += [
        "",
        "The baseline is the same service with BentoML's HTTP metrics switched back on by `BENTOML_CONFIG` (what the "
        "service ran before this change). RSS is the sum over both workers.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
