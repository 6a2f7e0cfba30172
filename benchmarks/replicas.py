"""Throughput of two ``surrogate serve`` replicas against one, measured in one run (issue 18).

Both set-ups serve the same champion (``surrogate train --models physics`` on the embedded data set, a
reconstruction of Tan et al. 2021, not measurements) from one MLflow store and share one campaign store:
PostgreSQL when it answers on 127.0.0.1:5432 (a database ``team_bench_<random>``, dropped afterwards), else
SQLite. Each replica runs ``--workers 1``, so "2 replicas" is two processes against one.

Load: ``wrk`` (a C program, so the load generator takes little of the 2 cores), ``--connections`` in all, split
evenly over the replicas (one wrk per replica, run at the same time; requests/s added up):

- ``predict``: ``POST /predict`` with one design;
- ``status``: ``GET /campaigns/NAME`` with a read token (a campaign with 20 observations and 2 pending).

The set-ups alternate (1, 2, 1, 2, ... ``--repeats`` times each) so that a change of the machine's load hits
both; the report gives every repeat, the median requests/s per set-up and the ratio of the medians
(2 replicas / 1). On 2 shared cores expect well under 2x: both replicas and wrk compete for the same cores.

Needs ``wrk`` (``apt-get update && apt-get install -y wrk``). Writes benchmarks/results/replicas.{json,md}::

    nice -n 10 .venv/bin/python benchmarks/replicas.py [--duration 10] [--repeats 3] [--connections 16]

``--duration`` is in whole seconds (wrk takes no fractions).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SURROGATE = str(Path(sys.executable).parent / "surrogate")
DESIGN = {"buffer": "SiO2", "anneal_temp_c": 300.0, "test_temp_c": 25.0}
CAMPAIGN = "bench"
WRK_SCRIPT = """
wrk.method = "%(method)s"
wrk.body = '%(body)s'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(token)s"
done = function(summary, latency, requests)
  io.write(string.format('WRKJSON {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p99_us": %%d, '
    .. '"status_errors": %%d, "connect_errors": %%d, "read_errors": %%d, "write_errors": %%d, "timeouts": %%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), summary.errors.status,
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout))
end
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _decoded(raw: bytes) -> Any:
    """``raw`` as JSON, or as text when it is not JSON (BentoML's ``/readyz`` answers plain text)."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def http(url: str, body: dict | None = None, token: str | None = None) -> tuple[int, Any]:
    """One request; (status, body: parsed JSON, else text)."""
    request = urllib.request.Request(url, None if body is None else json.dumps(body).encode())
    request.add_header("content-type", "application/json")
    if token:
        request.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, _decoded(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, _decoded(exc.read())


@contextlib.contextmanager
def campaign_store(folder: Path) -> Iterator[str]:
    """A PostgreSQL database of its own when PostgreSQL answers, else a SQLite file in ``folder``; its URL."""
    from surrogate.storage import database_url, reachable_postgres_url

    admin = reachable_postgres_url()
    if admin is None:
        yield f"sqlite:///{folder / 'campaigns.db'}"
        return
    import sqlalchemy

    name = f"team_bench_{uuid.uuid4().hex[:8]}"
    engine = sqlalchemy.create_engine(database_url(admin), isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


class Replica:
    """A ``surrogate serve --workers 1`` in ``folder`` (its settings file), on a free port."""

    def __init__(self, folder: Path, env: dict[str, str], index: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / f"replica-{index}.log"
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [SURROGATE, "serve", "--port", str(self.port), "--workers", "1"],
                cwd=folder,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, limit_s: float = 300) -> None:
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"replica exited {self.process.returncode}: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(OSError):
                if http(f"{self.url}/readyz")[0] == 200:
                    return
            time.sleep(0.5)
        raise SystemExit(f"replica not ready after {limit_s:.0f} s: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)


def wrk_at_once(targets: list[tuple[str, Path]], connections: int, duration_s: int) -> dict[str, Any]:
    """One wrk per ``(url, script)``, all at the same time for ``duration_s`` whole seconds (wrk takes no fractions),
    ``connections`` split evenly; the summed result (requests/s added up, latencies in ms per replica)."""
    share = max(connections // len(targets), 1)
    threads = max(min(2, share), 1)
    processes = [
        subprocess.Popen(
            ["wrk", f"-t{threads}", f"-c{share}", f"-d{duration_s}s", "--timeout", "30s", "-s", str(script), url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for url, script in targets
    ]
    parts = []
    for process in processes:
        out, err = process.communicate(timeout=duration_s + 120)
        line = next((x for x in out.splitlines() if x.startswith("WRKJSON ")), None)
        if line is None:
            raise SystemExit(f"wrk printed no result: {out[-500:]} {err[-500:]}")
        parts.append(json.loads(line.removeprefix("WRKJSON ")))
    errors = sum(p[k] for p in parts for k in ("status_errors", "connect_errors", "read_errors", "write_errors"))
    errors += sum(p["timeouts"] for p in parts)
    return {
        "requests": sum(p["requests"] for p in parts),
        "requests_per_s": sum(p["requests"] / (p["duration_us"] / 1e6) for p in parts),
        "p50_ms_per_replica": [p["p50_us"] / 1e3 for p in parts],
        "p99_ms_per_replica": [p["p99_us"] / 1e3 for p in parts],
        "errors": errors,
    }


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (``platform.processor()`` when it has none)."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def memory_gib() -> float:
    """The machine's memory in GiB (``MemTotal`` of /proc/meminfo)."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024**2, 1)
    return float("nan")


def wrk_version() -> str:
    """The first line of ``wrk -v`` (wrk prints it and exits 1)."""
    done = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    return (done.stdout + done.stderr).strip().splitlines()[0]


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="whole seconds per wrk run (default 10)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per set-up and endpoint (default 3)")
    parser.add_argument("--connections", type=int, default=16, help="concurrent connections in all (default 16)")
    args = parser.parse_args()
    if args.duration < 1 or args.repeats < 1 or args.connections < 2:
        parser.error("--duration and --repeats must be at least 1, --connections at least 2 (one per replica)")
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get update && apt-get install -y wrk")
    before = uptime()
    with tempfile.TemporaryDirectory(prefix="replicas-bench-") as tmp:
        folder = Path(tmp)
        token = "bench-read-token"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SURROGATE_", "MLFLOW_TRACKING"))}
        env.update(OMP_NUM_THREADS="1", BENTOML_HOME=str(folder / "bentoml"), MLFLOW_DISABLE_TELEMETRY="true")
        env.update(BENTOML_DO_NOT_TRACK="true")
        with campaign_store(folder) as store:
            (folder / "surrogate.toml").write_text(
                f'tracking_uri = "sqlite:///{folder / "mlflow.db"}"\noptuna_storage = "{store}"\n'
                f'api_token = "{token}"\nchampion_poll_s = 0\n'
            )
            print("training the champion (surrogate train --models physics) ...", file=sys.stderr)
            subprocess.run(
                [SURROGATE, "train", "--models", "physics", "--json"],
                cwd=folder,
                env=env,
                check=True,
                capture_output=True,
            )
            replicas = [Replica(folder, env, index) for index in range(2)]
            try:
                for replica in replicas:
                    replica.wait_ready()
                first = replicas[0].url
                assert http(f"{first}/campaigns", {"name": CAMPAIGN, "objective": "conductivity"}, token)[0] == 201
                for round_number in range(11):  # 20 observations, then 2 pending suggestions
                    batch = http(f"{first}/suggest", {"campaign": CAMPAIGN, "n": 2}, token)[1]["suggestions"]
                    if round_number == 10:
                        break
                    rows = [
                        {k: s[k] for k in ("trial", "buffer", "anneal_temp_c", "test_temp_c")}
                        | {"conductivity_s_cm": 1e-5 * (1 + i + round_number)}
                        for i, s in enumerate(batch)
                    ]
                    assert http(f"{first}/observe", {"campaign": CAMPAIGN, "observations": rows}, token)[0] == 200
                scripts = {}
                for endpoint, method, body in [
                    ("predict", "POST", json.dumps({"designs": [DESIGN]})),
                    ("status", "GET", ""),
                ]:
                    path = folder / f"{endpoint}.lua"
                    path.write_text(WRK_SCRIPT % {"method": method, "body": body, "token": token})
                    scripts[endpoint] = path
                paths = {"predict": "/predict", "status": f"/campaigns/{CAMPAIGN}"}
                runs: dict[str, dict[str, list[dict]]] = {e: {"1": [], "2": []} for e in scripts}
                for endpoint in scripts:  # warm-up of both replicas
                    wrk_at_once([(r.url + paths[endpoint], scripts[endpoint]) for r in replicas], 4, 2)
                for repeat in range(args.repeats):
                    for endpoint in scripts:
                        for count in ("1", "2"):
                            used = replicas[: int(count)]
                            targets = [(r.url + paths[endpoint], scripts[endpoint]) for r in used]
                            result = wrk_at_once(targets, args.connections, args.duration)
                            runs[endpoint][count].append(result)
                            print(
                                f"{endpoint} repeat {repeat} on {count} replica(s): "
                                f"{result['requests_per_s']:.1f} req/s, {result['errors']} errors",
                                file=sys.stderr,
                            )
            finally:
                for replica in replicas:
                    replica.stop()
    after = uptime()
    summary = {}
    for endpoint, per_count in runs.items():
        medians = {count: statistics.median(r["requests_per_s"] for r in found) for count, found in per_count.items()}
        summary[endpoint] = {
            "median_requests_per_s_1_replica": medians["1"],
            "median_requests_per_s_2_replicas": medians["2"],
            "ratio_2_over_1": medians["2"] / medians["1"],
            "errors": sum(r["errors"] for found in per_count.values() for r in found),
        }
        for count, found in per_count.items():  # latency of the slower replica in each run, median over runs
            for key in ("p50", "p99"):
                summary[endpoint][f"median_{key}_ms_{count}"] = statistics.median(
                    max(r[f"{key}_ms_per_replica"]) for r in found
                )
    document = {
        "command": " ".join(["nice -n 10 .venv/bin/python benchmarks/replicas.py", *sys.argv[1:]]),
        "nice": os.nice(0),
        "campaign_store": "postgresql" if store.startswith("postgresql") else "sqlite",
        "cores": os.cpu_count(),
        "cpu": cpu_model(),
        "memory_gib": memory_gib(),
        "python": platform.python_version(),
        "wrk": wrk_version(),
        "duration_s": args.duration,
        "repeats": args.repeats,
        "connections": args.connections,
        "uptime_before": before,
        "uptime_after": after,
        "summary": summary,
        "runs": runs,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "replicas.json").write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    lines = [
        "# Two service replicas against one",
        "",
        f"Command: `{document['command']}` (niceness {document['nice']}) on {document['cores']} cores "
        f"({document['cpu']}), {document['memory_gib']} GiB, Python {document['python']}, {document['wrk']}; the "
        f"machine was shared with a test-suite run. Campaign store: {document['campaign_store']}. Each replica is "
        f"`surrogate serve --workers 1`; load from `wrk`, {args.connections} connections in all split over the "
        f"replicas, {args.duration} s per run, {args.repeats} alternating runs per set-up. The served model is "
        "`surrogate train --models physics` on the embedded data set (a reconstruction of Tan et al. 2021, not "
        "measurements).",
        "",
        f"Load before: `{before}`; after: `{after}`.",
        "",
        "| endpoint | 1 replica (req/s, median) | 2 replicas (req/s, median) | ratio 2/1 | p50 / p99 ms, 1 replica | "
        "p50 / p99 ms, 2 replicas | errors |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for endpoint, entry in summary.items():
        lines.append(
            f"| {endpoint} | {entry['median_requests_per_s_1_replica']:.1f} | "
            f"{entry['median_requests_per_s_2_replicas']:.1f} | {entry['ratio_2_over_1']:.2f} | "
            f"{entry['median_p50_ms_1']:.1f} / {entry['median_p99_ms_1']:.1f} | "
            f"{entry['median_p50_ms_2']:.1f} / {entry['median_p99_ms_2']:.1f} | {entry['errors']} |"
        )
    lines += ["", "Every run (requests/s):", ""]
    for endpoint, per_count in runs.items():
        for count, found in per_count.items():
            values = ", ".join(f"{r['requests_per_s']:.1f}" for r in found)
            lines.append(f"- {endpoint}, {count} replica(s): {values}")
    lines += [
        "",
        "Latencies: wrk's per replica; the slower replica's in each run, median over the runs. Errors: wrk's "
        "connect, read, write, timeout and non-2xx/3xx counts, all runs.",
        "",
        "Two replicas share 2 cores with each other and with wrk, so the ratio stays under 2; it says how much a",
        "second process buys on this machine, not on two machines. Absolute requests/s move with the load.",
        "",
    ]
    (RESULTS / "replicas.md").write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
