"""Latency and throughput of the HTTP service's /predict next to the in-process model call (the floor).

Needs ``wrk`` and ``curl`` (``apt-get update && apt-get install -y wrk curl``): the load generator is a C program so that
it does not eat the server's CPU the way Python client threads would. The script stops with a clear
message when it is missing.

For each model (the registry champion, and a near-zero-cost *probe* model that isolates the service's
own overhead) it measures, in one run:

- the in-process ``Surrogate.predict`` call for one design (p50, p99) and for 10,000 designs: the floor;
- where one request's time goes in-process: JSON parsing + pydantic validation, the design frame, the
  model, the response JSON;
- ``surrogate serve`` (``--workers``, default 2) under ``wrk`` with 1, 8 and 32 concurrent connections
  posting one design each (p50, p99, requests/s, errors), ``--duration`` seconds per level after a warm-up;
- one 10,000-design call over HTTP sent by ``curl`` (median of 5);
- in the same run, a *reference*: a minimal BentoML service (:class:`Reference`, one ``@bentoml.api`` that
  parses the same body and returns a constant, same worker count) under the same load. Our figures are also
  reported as ratios to it (p50, p99, requests/s), since absolute figures move with the machine's load.

The in-process floor is measured two ways: ``Surrogate.predict`` (frames in and out, the library API) and
``design_batch`` + ``Surrogate.predict_columns`` (validated arrays in, columns out: what the service calls).
The headline numbers of an earlier results file (``--compare``; default the file this run replaces) are
shown next to the new ones.

Writes ``benchmarks/results/service_latency.json`` and ``.md`` (with ``uptime`` before and after). Usage::

    MLFLOW_TRACKING_URI=sqlite:///mlruns/mlflow.db nice -n 10 python benchmarks/service_latency.py [--duration 15]

Time in milliseconds throughout.
"""

from __future__ import annotations

import argparse
import gc
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
import urllib.request
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DESIGN = {"buffer": "sio2", "anneal_temp_c": 300.0, "test_temp_c": 25.0, "c_rate": 30.0, "cycles": 100}
TARGETS_SEQ_P50_MS = 1.5
TARGET_32_RPS = 1000.0
TARGET_32_P99_MS = 100.0
TARGET_10K_MS = 150.0

WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '%s'
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  io.write(string.format('WRKJSON {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p90_us": %%d, "p99_us": %%d, '
    .. '"mean_us": %%f, "status_errors": %%d, "connect_errors": %%d, "read_errors": %%d, "write_errors": %%d, '
    .. '"timeouts": %%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, summary.errors.status, summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.timeout))
end
"""


REFERENCE_WORKERS_ENV = "SURROGATE_REFERENCE_WORKERS"


@bentoml.service(
    name="reference",
    workers=int(os.environ.get(REFERENCE_WORKERS_ENV, "1")),
    traffic={"timeout": 60, "concurrency": 256},
    logging={"access": {"enabled": False}},
)
class Reference:
    """The reference: a minimal BentoML service with one API that parses the /predict body and returns a constant.

    It measures what BentoML itself costs on this machine, in this run; ``async`` like our /predict (a sync API
    would add a thread hop). Served by ``bentoml serve service_latency:Reference``.
    """

    @bentoml.api(route="/predict")
    async def predict(self, designs: list[dict[str, Any]]) -> dict[str, int]:
        return {"ok": 1}


class ProbeModel:
    """A near-zero-cost target model (a constant in natural space): isolates the HTTP layer's own cost.

    Not a science model: its predictions mean nothing; it exists so the service's overhead can be
    measured apart from the model's.
    """

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> ProbeModel:
        self.mean_ = float(np.mean(y))
        self.std_ = float(np.std(y)) or 0.1
        return self

    def predict(self, X: pd.DataFrame, return_std: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        mean = np.full(len(X), self.mean_)
        return (mean, np.full(len(X), self.std_)) if return_std else mean

    def predict_batch(self, designs: Any, return_std: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """The array path :class:`Surrogate` uses (as the families have): no frame is built."""
        mean = np.full(len(designs), self.mean_)
        return (mean, np.full(len(designs), self.std_)) if return_std else mean


def probe_surrogate() -> Any:
    """A :class:`Surrogate` of :class:`ProbeModel` per target, with the embedded data's training domains."""
    from service_latency import ProbeModel as Importable  # pickled by module name, importable by the server

    from surrogate.dataset import load_default_dataset
    from surrogate.design import TARGETS
    from surrogate.models.base import FEATURES, TARGET_SPACES, Surrogate, TrainingDomain, design_frame

    data = load_default_dataset()
    models, domains = {}, {}
    for target in TARGETS:
        rows = data[data[target].notna()]
        X = design_frame(rows)[list(FEATURES[target])]
        models[target] = Importable().fit(X, TARGET_SPACES[target].forward(rows[target].to_numpy(float)))
        domains[target] = TrainingDomain.from_frame(X)
    return Surrogate(models, domains, {"family": "probe (constant; HTTP-overhead measurement only)"})


# ------------------------------------------------------------------ measurements
def _percentiles(samples_s: list[float]) -> dict[str, float]:
    values = np.asarray(samples_s) * 1e3
    return {"p50_ms": float(np.percentile(values, 50)), "p99_ms": float(np.percentile(values, 99))}


def _timed(call: Any, repeats: int) -> list[float]:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return samples


def in_process(model: Any, n_single: int) -> dict[str, Any]:
    """The floor, one design (many calls) and 10,000 designs (median of 5), two ways.

    ``Surrogate.predict`` takes and returns frames (the library API); the service calls
    ``design_batch`` + ``Surrogate.predict_columns`` (validated arrays in, columns out: no pandas).
    """
    from surrogate.models.base import design_batch

    gc.collect()
    gc.freeze()  # as the service does after loading (serving.service.Surrogate.__init__)
    one = pd.DataFrame([DESIGN])
    big = pd.DataFrame([DESIGN] * 10_000)
    one_columns = {k: [v] for k, v in DESIGN.items()}
    big_columns = {k: [v] * 10_000 for k, v in DESIGN.items()}
    _timed(lambda: model.predict(one), 50)
    samples = _timed(lambda: model.predict(one), n_single)
    big_samples = _timed(lambda: model.predict(big), 5)
    _timed(lambda: model.predict_columns(design_batch(one_columns)), 50)
    array_samples = _timed(lambda: model.predict_columns(design_batch(one_columns)), n_single)
    array_big = _timed(lambda: model.predict_columns(design_batch(big_columns)), 5)
    return {
        "single": _percentiles(samples),
        "designs_10000_ms": 1e3 * statistics.median(big_samples),
        "arrays_single": _percentiles(array_samples),
        "arrays_designs_10000_ms": 1e3 * statistics.median(array_big),
    }


def stages(model: Any) -> dict[str, dict[str, float]]:
    """Where one request's time goes in-process (median ms): parse+validate, design arrays, model, response JSON."""
    import serving.service as service

    spec = service.Surrogate.apis["predict"].input_spec
    out = {}
    for label, n, repeats in (("1 design", 1, 500), ("10000 designs", 10_000, 5)):
        body = json.dumps({"designs": [DESIGN] * n}).encode()
        timing: dict[str, list[float]] = {"parse_validate": [], "frame": [], "model": [], "response_json": []}
        for _ in range(repeats):
            t0 = time.perf_counter()
            parsed = spec.model_validate_json(body)
            t1 = time.perf_counter()
            batch = service.designs_batch(parsed.designs)
            t2 = time.perf_counter()
            columns = model.predict_columns(batch, level=0.9)
            t3 = time.perf_counter()
            service._json_bytes({"predictions": service.predictions_json(batch, columns)})
            t4 = time.perf_counter()
            for key, value in zip(timing, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                timing[key].append(value)
        out[label] = {key: 1e3 * statistics.median(values) for key, values in timing.items()}
    return out


def _uptime() -> str:
    """``uptime`` as printed (load averages over 1, 5 and 15 minutes)."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        load = os.getloadavg()
        return f"load average: {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _post(url: str, body: bytes) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method="POST", headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return response.status, response.read()


class Server:
    """A server subprocess (``surrogate serve`` or ``bentoml serve``) on a free port."""

    def __init__(self, command: list[str], env: dict[str, str], log: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(log, "w")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [*command, "--port", str(self.port)], env=env, stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"server exited {self.process.returncode}; see {log}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        raise SystemExit(f"server not ready after 120 s; see {log}")

    @classmethod
    def surrogate(cls, model_uri: str, workers: int, env: dict[str, str], log: Path) -> Server:
        """``surrogate serve`` of ``model_uri``."""
        command = [str(Path(sys.executable).parent / "surrogate"), "serve", "--workers", str(workers)]
        return cls([*command, "--model", model_uri], env, log)

    @classmethod
    def reference(cls, workers: int, env: dict[str, str], log: Path) -> Server:
        """``bentoml serve`` of :class:`Reference`."""
        command = [sys.executable, "-m", "bentoml", "serve", "service_latency:Reference", "--host", "127.0.0.1"]
        return cls(command, dict(env, **{REFERENCE_WORKERS_ENV: str(workers)}), log)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def curl_seconds(url: str, body: Path) -> float:
    """Wall time of one POST of ``body`` by curl (a C client: no Python on the client side), seconds."""
    command = [
        "curl",
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{time_total}",
        "-H",
        "Content-Type: application/json",
    ]
    done = subprocess.run([*command, "--data-binary", f"@{body}", url], capture_output=True, text=True, check=True)
    status, seconds = done.stdout.split()
    assert status == "200", status
    return float(seconds)


def wrk(url: str, connections: int, duration_s: int, script: Path) -> dict[str, Any]:
    """One wrk run posting one design per request; latencies in ms."""
    threads = min(2, connections)
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration_s}s", "--timeout", "10s", "-s", str(script)]
    done = subprocess.run([*command, f"{url}/predict"], capture_output=True, text=True, check=True)
    line = next(x for x in done.stdout.splitlines() if x.startswith("WRKJSON "))
    raw = json.loads(line.removeprefix("WRKJSON "))
    errors = sum(raw[k] for k in ("status_errors", "connect_errors", "read_errors", "write_errors", "timeouts"))
    return {
        "connections": connections,
        "duration_s": raw["duration_us"] / 1e6,
        "requests": raw["requests"],
        "requests_per_s": raw["requests"] / (raw["duration_us"] / 1e6),
        "p50_ms": raw["p50_us"] / 1e3,
        "p90_ms": raw["p90_us"] / 1e3,
        "p99_ms": raw["p99_us"] / 1e3,
        "mean_ms": raw["mean_us"] / 1e3,
        "errors": errors,
    }


def over_http(server: Server, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """wrk at 1, 8 and 32 connections, then a 10,000-design call by curl; the server is stopped at the end."""
    script = workdir / "post.lua"
    script.write_text(WRK_SCRIPT % json.dumps({"designs": [DESIGN]}))
    try:
        wrk(server.url, 8, 3, script)  # warm-up: imports, caches, connection pools
        levels = [wrk(server.url, c, args.duration, script) for c in (1, 8, 32)]
        body = workdir / "designs-10000.json"
        body.write_text(json.dumps({"designs": [DESIGN] * 10_000}))
        status, _ = _post(f"{server.url}/predict", body.read_bytes())
        assert status == 200
        big = [curl_seconds(f"{server.url}/predict", body) for _ in range(5)]
        return {"levels": levels, "designs_10000_ms": 1e3 * statistics.median(big), "designs_10000_client": "curl"}
    finally:
        server.stop()


def against_reference(http: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    """Our p50, p99 and requests/s at each concurrency, and the 10,000-design call, as ratios to the reference."""
    levels = []
    for ours, ref in zip(http["levels"], reference["levels"], strict=True):
        levels.append(
            {
                "connections": ours["connections"],
                "p50_ratio": ours["p50_ms"] / ref["p50_ms"],
                "p99_ratio": ours["p99_ms"] / ref["p99_ms"],
                "throughput_ratio": ours["requests_per_s"] / ref["requests_per_s"],
            }
        )
    return {"levels": levels, "designs_10000_ratio": http["designs_10000_ms"] / reference["designs_10000_ms"]}


def measure(
    label: str, model: Any, model_uri: str, args: argparse.Namespace, env: dict, workdir: Path, reference: dict
) -> dict:
    print(f"[{label}] in-process floor ...", file=sys.stderr)
    floor = in_process(model, args.single_calls)
    breakdown = stages(model)
    print(f"[{label}] over HTTP with wrk ...", file=sys.stderr)
    server = Server.surrogate(model_uri, args.workers, env, workdir / f"server-{_free_port()}.log")
    http = over_http(server, args, workdir)
    sequential = http["levels"][0]
    at32 = http["levels"][2]
    return {
        "model": label,
        "model_uri": model_uri,
        "in_process": floor,
        "stages_ms": breakdown,
        "http": http,
        "ratios": {
            "sequential_p50_over_floor_p50": sequential["p50_ms"] / floor["single"]["p50_ms"],
            "designs_10000_http_over_floor": http["designs_10000_ms"] / floor["designs_10000_ms"],
        },
        "against_reference": against_reference(http, reference),
        "targets": {
            "sequential_p50_le_1.5ms": sequential["p50_ms"] <= TARGETS_SEQ_P50_MS,
            "c32_ge_1000rps": at32["requests_per_s"] >= TARGET_32_RPS,
            "c32_p99_le_100ms": at32["p99_ms"] <= TARGET_32_P99_MS,
            "c32_no_error": at32["errors"] == 0,
            "designs_10000_le_150ms": http["designs_10000_ms"] <= TARGET_10K_MS,
        },
    }


# ------------------------------------------------------------------ report
def summary(document: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of a results document (to show an earlier run next to a new one)."""
    return {
        "load_average_1min_before_after": document["machine"]["load_average_1min_before_after"],
        "runs": [
            {
                "model": run["model"],
                "in_process_p50_ms": run["in_process"]["single"]["p50_ms"],
                "in_process_10000_ms": run["in_process"]["designs_10000_ms"],
                "http": [
                    {k: level[k] for k in ("connections", "p50_ms", "p99_ms", "requests_per_s", "errors")}
                    for level in run["http"]["levels"]
                ],
                "http_10000_ms": run["http"]["designs_10000_ms"],
            }
            for run in document["runs"]
        ],
    }


def _previous_markdown(previous: dict[str, Any]) -> list[str]:
    lines = [
        "## Earlier run, for comparison (`--compare`; default: the results file this run replaced)",
        "",
        f"1-min load average {previous['load_average_1min_before_after']} (before, after).",
        "",
        "| model | in-process 1 design p50 | in-process 10,000 | HTTP p50 / p99 / req/s at 1, 8, 32 clients "
        "| HTTP 10,000 |",
        "|---|---|---|---|---|",
    ]
    for run in previous["runs"]:
        levels = "; ".join(
            f"{level['connections']}: {level['p50_ms']:.2f} / {level['p99_ms']:.2f} / {level['requests_per_s']:.0f}"
            for level in run["http"]
        )
        lines.append(
            f"| {run['model']} | {run['in_process_p50_ms']:.2f} | {run['in_process_10000_ms']:.1f} | {levels} "
            f"| {run['http_10000_ms']:.1f} |"
        )
    return [*lines, ""]


def markdown(document: dict[str, Any]) -> str:
    lines = [
        "# /predict latency and throughput",
        "",
        f"Machine: {document['machine']['cpus']} CPUs, {document['machine']['platform']}, 1-min load average "
        f"{document['machine']['load_average_1min_before_after']} (before, after: the machine is shared); "
        f"server `surrogate serve --workers {document['workers']}`; load from `wrk` "
        f"({document['duration_s']} s per level after a 3 s warm-up), one design per request; times in ms. "
        "Produced by `benchmarks/service_latency.py`.",
        "",
        f"`uptime` before: `{document['machine']['uptime_before_after'][0]}`; "
        f"after: `{document['machine']['uptime_before_after'][1]}`.",
        "",
    ]
    reference = document["reference"]
    lines += [
        "## Reference: a minimal BentoML service, same run, same workers",
        "",
        "`service_latency:Reference`: one async `@bentoml.api` that parses the same body and returns a constant.",
        "",
        "| measurement | p50 | p99 | req/s | errors |",
        "|---|---|---|---|---|",
    ]
    for level in reference["levels"]:
        lines.append(
            f"| HTTP, {level['connections']} concurrent | {level['p50_ms']:.2f} | {level['p99_ms']:.2f} | "
            f"{level['requests_per_s']:.0f} | {level['errors']} |"
        )
    lines += ["", f"10,000 designs in one call (curl): {reference['designs_10000_ms']:.1f} ms.", ""]
    lines += [
        "## Ours as ratios to the reference (1.0 = as fast as BentoML's floor; latency > 1 and throughput < 1 "
        "are our cost)",
        "",
        "| model | clients | p50 ratio | p99 ratio | throughput ratio |",
        "|---|---|---|---|---|",
    ]
    for run in document["runs"]:
        for level in run["against_reference"]["levels"]:
            lines.append(
                f"| {run['model']} | {level['connections']} | {level['p50_ratio']:.2f} | {level['p99_ratio']:.2f} | "
                f"{level['throughput_ratio']:.2f} |"
            )
    lines += [""]
    lines += [
        f"- {run['model']}: 10,000 designs in one call, {run['against_reference']['designs_10000_ratio']:.2f}x "
        "the reference's time to parse the same body"
        for run in document["runs"]
    ]
    lines += [""]
    for run in document["runs"]:
        floor, http = run["in_process"], run["http"]
        lines += [
            f"## Model: {run['model']}",
            "",
            f"`{run['model_uri']}`",
            "",
            "| measurement | p50 | p99 | req/s | errors |",
            "|---|---|---|---|---|",
            f"| in-process `Surrogate.predict` (frame in/out), 1 design (floor) | {floor['single']['p50_ms']:.3f} | "
            f"{floor['single']['p99_ms']:.3f} | {1e3 / floor['single']['p50_ms']:.0f} (1 core) | |",
            f"| in-process `design_batch` + `predict_columns` (the service's call), 1 design | "
            f"{floor['arrays_single']['p50_ms']:.3f} | {floor['arrays_single']['p99_ms']:.3f} | "
            f"{1e3 / floor['arrays_single']['p50_ms']:.0f} (1 core) | |",
        ]
        for level in http["levels"]:
            lines.append(
                f"| HTTP, {level['connections']} concurrent | {level['p50_ms']:.2f} | {level['p99_ms']:.2f} | "
                f"{level['requests_per_s']:.0f} | {level['errors']} |"
            )
        lines += [
            "",
            f"10,000 designs in one call: in-process {floor['designs_10000_ms']:.1f} ms "
            f"(arrays: {floor['arrays_designs_10000_ms']:.1f} ms), "
            f"over HTTP (curl) {http['designs_10000_ms']:.1f} ms "
            f"(ratio {run['ratios']['designs_10000_http_over_floor']:.2f}). "
            f"Sequential HTTP p50 / floor p50 = {run['ratios']['sequential_p50_over_floor_p50']:.2f}.",
            "",
            "Where the time goes in-process (median ms):",
            "",
            "| request | JSON parse + pydantic | design arrays (validated) | model | response JSON |",
            "|---|---|---|---|---|",
        ]
        for label, stage in run["stages_ms"].items():
            lines.append(
                f"| {label} | {stage['parse_validate']:.3f} | {stage['frame']:.3f} | {stage['model']:.3f} | "
                f"{stage['response_json']:.3f} |"
            )
        lines += ["", "Targets (2 cores):", ""]
        lines += [f"- {name}: {'met' if ok else 'NOT met'}" for name, ok in run["targets"].items()]
        lines.append("")
    if "previous" in document:
        lines += _previous_markdown(document["previous"])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=15, help="seconds of load per concurrency level")
    parser.add_argument(
        "--compare",
        type=Path,
        default=RESULTS / "service_latency.json",
        help="an earlier results file to show next to this run (default: the one this run replaces)",
    )
    parser.add_argument("--workers", type=int, default=2, help="service worker processes")
    parser.add_argument("--single-calls", type=int, default=300, help="in-process single-design calls")
    parser.add_argument("--model", default=None, help="MLflow model URI (default: the registry champion)")
    parser.add_argument("--no-probe", action="store_true", help="skip the probe-model run")
    args = parser.parse_args(argv)
    missing = [tool for tool in ("wrk", "curl") if shutil.which(tool) is None]
    if missing:
        print(f"{' and '.join(missing)} not installed: apt-get update && apt-get install -y wrk curl", file=sys.stderr)
        return 2
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    import mlflow

    from surrogate import tracking

    workdir = Path(tempfile.mkdtemp(prefix="service-latency-"))
    env = dict(os.environ, BENTOML_HOME=str(workdir / "bentoml"))
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parent), str(ROOT), env.get("PYTHONPATH", "")])
    env.pop("SURROGATE_API_TOKEN", None)
    load_before = os.getloadavg()
    uptime_before = _uptime()
    print("[reference] minimal BentoML service over HTTP with wrk ...", file=sys.stderr)
    reference_server = Server.reference(args.workers, env, workdir / "reference.log")
    reference = over_http(reference_server, args, workdir)
    runs = []
    champion_uri = args.model or tracking.CHAMPION_URI
    champion = tracking.load_champion(args.model)  # InputError "run surrogate train" when there is none
    runs.append(measure("champion", champion, champion_uri, args, env, workdir, reference))
    if not args.no_probe:  # logged to a throw-away MLflow store in the work folder, never the user's
        probe_env = dict(env, MLFLOW_TRACKING_URI=f"sqlite:///{workdir / 'probe-mlflow.db'}")
        os.environ["MLFLOW_TRACKING_URI"] = probe_env["MLFLOW_TRACKING_URI"]
        os.chdir(workdir)
        tracking.configure_mlflow("service-latency-probe")
        probe = probe_surrogate()
        with mlflow.start_run(run_name="probe-model"):
            probe_uri, _ = tracking.log_surrogate(probe, register=False)
        label = "probe (constant model: the service's own overhead)"
        runs.append(measure(label, probe, probe_uri, args, probe_env, workdir, reference))
    document = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_1min_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
            "uptime_before_after": [uptime_before, _uptime()],
        },
        "workers": args.workers,
        "duration_s": args.duration,
        "design": DESIGN,
        "reference": {"service": "service_latency:Reference (minimal BentoML service, constant answer)", **reference},
        "runs": runs,
    }
    if args.compare.exists():
        document["previous"] = summary(json.loads(args.compare.read_text()))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "service_latency.json").write_text(json.dumps(document, indent=2) + "\n")
    (RESULTS / "service_latency.md").write_text(markdown(document))
    print(markdown(document))
    return 0


if __name__ == "__main__":
    sys.exit(main())
