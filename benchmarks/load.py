"""The reliability probe's load cases (issue 18, findings 1 and 3) against a real ``surrogate serve`` with 2 workers.

On PostgreSQL (a database of its own, created and dropped by the script):

1. **Concurrent status calls**: one campaign with pending suggestions; 32, then 64 concurrent
   ``GET /campaigns/NAME`` (with the token); the answers by status code, the count of 5xx and the first body of
   each status other than 200. Two rounds on one fresh server: ``cold`` (the workers' first campaign calls, so
   each worker opens its campaign storage under that load) and ``warm`` (the same again right after).
2. **Distinct unauthenticated paths**: ``--paths`` (default 20,000) requests without a token to
   ``/campaigns/<uuid>`` and ``/no/such/<uuid>``; the workers' resident memory (sum of both, ``VmRSS``) before and
   after, and the size of ``/metrics`` after.

Case 2 runs twice in one run, on two fresh servers: the service as it is (BentoML's HTTP metrics off, the
service's own by route template) and the **baseline**, the old behaviour: BentoML's metrics switched back on with a
BentoML configuration file (``BENTOML_CONFIG``, ``services.llto-surrogate.metrics.enabled: true``), so BentoML's
middleware records every raw path again. ``/metrics`` shows every worker's multiprocess files, BentoML's too, so the
baseline's page holds BentoML's raw-path series.

The service runs without a trained model (campaign routes need none), so nothing here comes from the embedded
data set (a reconstruction of Tan et al. 2021, not measurements). Writes ``benchmarks/results/load.json`` and
``load.md``, the md with the issue's goals marked met or missed from the measured figures: 0 answers of 5xx to
32 and to 64 concurrent status calls; after ``--paths`` distinct paths the workers' memory within 10 % of before
and ``/metrics`` under 1 MB (1,000,000 bytes). Usage::

    nice -n 10 .venv/bin/python benchmarks/load.py [--paths 20000] [--postgres postgresql+psycopg2://...]

Memory in MiB; the machine is shared, so the ratios (after/before) are the figures to read.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
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
MEMORY_GOAL_RATIO = 1.10
"""Goal: the workers' resident memory after the distinct paths at most 10 % above before."""
POOL_CONNECTIONS_PER_WORKER = 15
"""SQLAlchemy's default pool: 5 connections kept plus 10 overflow, the most one engine (one storage) opens."""
METRICS_GOAL_BYTES = 1_000_000
"""Goal: the ``/metrics`` page after the distinct paths under 1 MB."""


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


def _command_line(pid: int) -> str:
    """The command line of process ``pid``, cut to 200 characters."""
    raw = (Path("/proc") / str(pid) / "cmdline").read_bytes()
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()[:200]


def machine() -> dict[str, Any]:
    """Cores, memory (GiB), CPU model and Python version of this machine."""
    cpu = next(
        (x.split(":", 1)[1].strip() for x in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in x),
        platform.processor(),
    )
    mem_kib = next(
        int(x.split()[1]) for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal")
    )
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024**2, 1),
        "cpu": cpu,
        "python": platform.python_version(),
    }


def postgres_connections(admin_url: str, database_name: str | None = None) -> dict[str, int]:
    """PostgreSQL's ``max_connections``, the connections open now (all databases: the server is shared) and, with
    ``database_name``, those open to that database (``in_database``). When the server refuses the connection
    (e.g. ``too many clients already``), ``{"error": the message's first line}`` instead."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(admin_url)
    try:
        with engine.connect() as connection:
            limit = int(connection.execute(sqlalchemy.text("SHOW max_connections")).scalar_one())
            used = int(connection.execute(sqlalchemy.text("SELECT count(*) FROM pg_stat_activity")).scalar_one())
            counts = {"max_connections": limit, "open": used}
            if database_name is not None:
                query = sqlalchemy.text("SELECT count(*) FROM pg_stat_activity WHERE datname = :name")
                counts["in_database"] = int(connection.execute(query, {"name": database_name}).scalar_one())
    except sqlalchemy.exc.OperationalError as exc:
        return {"error": str(exc.orig).strip().splitlines()[0]}
    finally:
        engine.dispose()
    return counts


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
    log = home / f"server-{'baseline' if baseline else 'now'}.log"
    with running_server(command, env, home, log, port) as (url, pid):
        yield url, pid


@contextlib.contextmanager
def running_server(
    command: list[str], env: dict[str, str], home: Path, log: Path, port: int, limit_s: float = 240
) -> Iterator[tuple[str, int]]:
    """Start ``command`` (a server on 127.0.0.1:``port``, output to ``log``), wait until ``/healthz`` answers 200
    (at most ``limit_s``), yield (url, server pid); terminate it afterwards (kill after 30 s)."""
    with open(log, "w") as output:
        process = subprocess.Popen(command, env=env, cwd=home, stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + limit_s
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited {process.returncode}; see {log}")
            with contextlib.suppress(OSError):
                if _get(f"{url}/healthz", timeout=5)[0] == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not start in {limit_s:.0f} s; see {log}")
            time.sleep(0.5)
        yield url, process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def concurrent_status(url: str, clients: int, round_name: str) -> dict[str, Any]:
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
        "round": round_name,
        "clients": clients,
        "statuses": {str(k): v for k, v in sorted(counts.items())},
        "server_errors": sum(v for k, v in counts.items() if k >= 500),
        "wall_s": round(time.perf_counter() - started, 2),
        "other_answers": samples,
    }


def stray_paths(url: str, count: int, connections: int = 4, distinct: bool = True) -> Counter:
    """``count`` unauthenticated requests over ``connections`` keep-alive connections, half to ``/campaigns/ID``, half
    to ``/no/such/ID``: with ``distinct`` a new uuid for each, else the same two paths every time (the control)."""
    fixed = uuid.UUID(int=0)
    host, port = url.removeprefix("http://").split(":")

    def run(share: int) -> Counter:
        seen: Counter = Counter()
        connection = http.client.HTTPConnection(host, int(port), timeout=120)
        try:
            for i in range(share):
                key = uuid.uuid4() if distinct else fixed
                path = f"/campaigns/{key}" if i % 2 else f"/no/such/{key}"
                connection.request("GET", path)
                response = connection.getresponse()
                response.read()
                seen[response.status] += 1
        finally:
            connection.close()
        return seen

    total: Counter = Counter()
    with ThreadPoolExecutor(connections) as pool:
        shares = [count // connections + (1 if i < count % connections else 0) for i in range(connections)]
        for seen in pool.map(run, shares):
            total.update(seen)
    return total


def memory_case(home: Path, storage: str, paths: int, baseline: bool, distinct: bool = True) -> dict[str, Any]:
    """``paths`` unauthenticated requests on a fresh server: workers' RSS (MiB) and ``/metrics`` size (bytes).

    ``distinct``: each to a path of its own (else the same two paths: the control). RSS is also taken after each
    quarter of the requests (``rss_checkpoints_mib``), so a growth that levels off shows apart from one per path.
    """
    with serving(home, storage, baseline) as (url, pid):
        workers = _children(pid)
        commands = [_command_line(worker) for worker in workers]
        stray_paths(url, 400, distinct=distinct)  # warm-up
        before = _rss_mib(workers)
        metrics_before = len(_get(f"{url}/metrics", TOKEN)[1])
        statuses: Counter = Counter()
        checkpoints = []
        elapsed = 0.0
        for quarter in range(4):
            share = paths // 4 + (paths % 4 if quarter == 3 else 0)
            started = time.perf_counter()
            statuses.update(stray_paths(url, share, distinct=distinct))
            elapsed += time.perf_counter() - started
            checkpoints.append([sum(statuses.values()), round(_rss_mib(workers), 1)])
        after = _rss_mib(workers)
        scrape_started = time.perf_counter()
        status, page = _get(f"{url}/metrics", TOKEN, timeout=600)
        scrape_s = time.perf_counter() - scrape_started
    if baseline:
        behaviour = "baseline: BentoML metrics on (raw paths)"
    else:
        behaviour = "now: own metrics by route template" + ("" if distinct else ", control: the same 2 paths")
    return {
        "behaviour": behaviour,
        "distinct_paths": distinct,
        "workers": len(workers),
        "worker_commands": commands,
        "paths": paths,
        "answers": {str(k): v for k, v in sorted(statuses.items())},
        "rss_before_mib": round(before, 1),
        "rss_checkpoints_mib": checkpoints,
        "rss_after_mib": round(after, 1),
        "rss_ratio": round(after / before, 3),
        "metrics_status": status,
        "metrics_bytes_before": metrics_before,
        "metrics_bytes_after": len(page),
        "metrics_scrape_s": round(scrape_s, 2),
        "elapsed_s": round(elapsed, 1),
        "requests_per_s": round(sum(statuses.values()) / elapsed, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--paths", type=int, default=20_000, help="distinct unauthenticated paths (default 20000)")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="PostgreSQL URL whose server gets a new database")
    parser.add_argument("--no-baseline", action="store_true", help="skip the BentoML-metrics-on baseline server")
    args = parser.parse_args(argv)
    if args.paths < 4:
        parser.error("--paths must be at least 4 (they are split over 4 connections)")
    command = "nice -n 10 .venv/bin/python benchmarks/load.py " + " ".join(argv if argv is not None else sys.argv[1:])
    results: dict[str, Any] = {"command": command.strip(), "nice": os.nice(0), "machine": machine(), "cases": {}}
    results["uptime_before"] = Path("/proc/loadavg").read_text().strip()
    results["postgres_before"] = postgres_connections(args.postgres)
    with database(args.postgres) as storage, tempfile.TemporaryDirectory(prefix="hardening-load-") as folder:
        home = Path(folder)
        from surrogate.campaign import Campaign
        from surrogate.objectives import Objective
        from surrogate.storage import get_storage

        campaign = Campaign.create(CAMPAIGN, Objective("conductivity"), storage=get_storage(storage))
        campaign.suggest(n=4, client_id="load-robot")  # pending suggestions: status reclaims leases under the lock
        with serving(home, storage, baseline=False) as (url, _):
            results["cases"]["status"] = []
            for round_name in ("cold", "warm"):
                for clients in (32, 64):
                    case = concurrent_status(url, clients, round_name)
                    case["postgres_after"] = postgres_connections(args.postgres, storage.rsplit("/", 1)[1])
                    results["cases"]["status"].append(case)
        results["cases"]["paths"] = [memory_case(home, storage, args.paths, baseline=False)]
        results["cases"]["paths"].append(memory_case(home, storage, args.paths, baseline=False, distinct=False))
        if not args.no_baseline:
            results["cases"]["paths"].append(memory_case(home, storage, args.paths, baseline=True))
    results["uptime_after"] = Path("/proc/loadavg").read_text().strip()
    results["postgres_after"] = postgres_connections(args.postgres)
    results["goals"] = goals(results)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "load.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "load.md").write_text(markdown(results))
    print(markdown(results))
    return 0


def goals(results: dict[str, Any]) -> dict[str, Any]:
    """The issue's goals, each with the measured figure and ``met`` (True/False), from ``results``."""
    status = results["cases"]["status"]
    now = next(c for c in results["cases"]["paths"] if c["behaviour"] == "now: own metrics by route template")
    fivexx = {f"{c['round']} {c['clients']}": c["server_errors"] for c in status}
    return {
        "status_no_5xx": {"measured": fivexx, "met": all(v == 0 for v in fivexx.values())},
        "memory_within_10_percent": {"measured": now["rss_ratio"], "met": now["rss_ratio"] <= MEMORY_GOAL_RATIO},
        "metrics_under_1_mb": {
            "measured": now["metrics_bytes_after"],
            "met": now["metrics_status"] == 200 and now["metrics_bytes_after"] < METRICS_GOAL_BYTES,
        },
    }


def _connections(counts: dict[str, Any]) -> str:
    """``in_database / open / max_connections`` of :func:`postgres_connections`, or its error."""
    if "error" in counts:
        return f"could not connect: {counts['error']}"
    return " / ".join(str(counts[k]) for k in ("in_database", "open", "max_connections") if k in counts)


def _mark(met: bool) -> str:
    return "**met**" if met else "**missed**"


def markdown(results: dict[str, Any]) -> str:
    """The results as a Markdown page."""
    box = results["machine"]
    goal = results["goals"]
    now = next(c for c in results["cases"]["paths"] if c["behaviour"] == "now: own metrics by route template")
    fivexx = ", ".join(f"{k} clients: {v}" for k, v in goal["status_no_5xx"]["measured"].items())
    lines = [
        "# Load cases of the reliability probe (issue 18)",
        "",
        f"Made by `{results['command']}` (niceness {results['nice']}) on {box['cores']} cores "
        f"({box['cpu']}), {box['memory_gib']} GiB, Python {box['python']}; the machine was shared with a test-suite "
        f"run. Load average (1, 5, 15 min, /proc/loadavg) before: {results['uptime_before']}; after: "
        f"{results['uptime_after']}. PostgreSQL (shared server) connections open / max_connections before: "
        f"{_connections(results['postgres_before'])}; after: {_connections(results['postgres_after'])}.",
        "",
        "`surrogate serve --workers 2`, campaigns on PostgreSQL (a database of the run's own), **no model loaded**: "
        "the campaign routes need none, so no figure here comes from the embedded data set (a reconstruction of "
        "Tan et al. 2021, not measurements).",
        "",
        "## Goals",
        "",
        f"- 0 answers of 5xx to 32 and to 64 concurrent status calls: {_mark(goal['status_no_5xx']['met'])} "
        f"(5xx counts, {fivexx}).",
        f"- After {now['paths']:,} distinct unauthenticated paths, the workers' memory within 10 %: "
        f"{_mark(goal['memory_within_10_percent']['met'])} (after/before {now['rss_ratio']}).",
        f"- `/metrics` under 1 MB (1,000,000 bytes) after them: {_mark(goal['metrics_under_1_mb']['met'])} "
        f"({now['metrics_bytes_after']:,} bytes).",
        "",
        "## Concurrent `GET /campaigns/NAME` (a campaign with 4 pending suggestions)",
        "",
        "One fresh server; `cold`: the workers' first campaign calls (each worker opens its campaign storage while "
        "they arrive); `warm`: the same again right after.",
        "",
        "| round | clients | answers by status | 5xx | wall s | PostgreSQL connections after: to the run's database "
        "/ all / max |",
        "|---|---:|---|---:|---:|---|",
    ]
    for case in results["cases"]["status"]:
        lines.append(
            f"| {case['round']} | {case['clients']} | {case['statuses']} | {case['server_errors']} | {case['wall_s']} | "
            f"{_connections(case['postgres_after'])} |"
        )
    seen = [c["postgres_after"].get("in_database", 0) for c in results["cases"]["status"]]
    pools = 2 * POOL_CONNECTIONS_PER_WORKER
    if max(seen) > pools:
        lines += [
            "",
            f"Up to {max(seen)} connections to the run's database, more than one storage per worker can hold (one "
            f"SQLAlchemy pool: at most {POOL_CONNECTIONS_PER_WORKER} connections, {pools} for 2 workers, besides the "
            "script's own one or two): the workers opened more than one storage each.",
        ]
    others = [(c, status, body) for c in results["cases"]["status"] for status, body in c["other_answers"].items()]
    if others:
        lines += ["", "First body of each answer other than 200:", ""]
        for case, status, body in others:
            lines.append(f"- {case['round']}, {case['clients']} clients, {status}: `{body}`")
    lines += [
        "",
        "## Distinct unauthenticated paths",
        "",
        "Each on a fresh server, after a warm-up of 400 such requests; half `/campaigns/<uuid>` (401 without a "
        "token), half `/no/such/<uuid>` (404), over 4 keep-alive connections. The control sends as many requests "
        "to the same two paths (uuid 0), so what it gains is per request, not per distinct path.",
        "",
        "| behaviour | requests | answers | requests/s | workers' RSS before → after, MiB | ratio | "
        "/metrics bytes before → after (status) | scrape s |",
        "|---|---:|---|---:|---|---:|---|---:|",
    ]
    for case in results["cases"]["paths"]:
        lines.append(
            f"| {case['behaviour']} | {case['paths']:,} | {case['answers']} | {case['requests_per_s']} | "
            f"{case['rss_before_mib']} → {case['rss_after_mib']} | {case['rss_ratio']} | "
            f"{case['metrics_bytes_before']:,} → {case['metrics_bytes_after']:,} ({case['metrics_status']}) | "
            f"{case['metrics_scrape_s']} |"
        )
    lines += ["", "Workers' RSS (MiB) after each quarter of the requests (requests sent: MiB):", ""]
    for case in results["cases"]["paths"]:
        marks = ", ".join(f"{sent:,}: {mib}" for sent, mib in case["rss_checkpoints_mib"])
        per_thousand = (case["rss_after_mib"] - case["rss_before_mib"]) / case["paths"] * 1000
        lines.append(
            f"- {case['behaviour']}: before {case['rss_before_mib']}; {marks} "
            f"({per_thousand:.1f} MiB per 1,000 requests)"
        )
    failed = [c for c in results["cases"]["paths"] if c["metrics_status"] != 200]
    for case in failed:
        lines += [
            "",
            f"{case['behaviour']}: `/metrics` answered {case['metrics_status']} after {case['metrics_scrape_s']} s "
            f"({case['metrics_bytes_after']} bytes: the error, not the page), so its size after is not known; it "
            f"was {case['metrics_bytes_before']:,} bytes already after the 400 warm-up requests.",
        ]
    lines += [
        "",
        "The baseline is the same service with BentoML's HTTP metrics switched back on by `BENTOML_CONFIG` (what the "
        "service ran before this change), in the same run. RSS is the sum of `VmRSS` over both workers (the direct "
        "children of the server process; their command lines are in load.json).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
