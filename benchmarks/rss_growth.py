"""Where the workers' per-request memory growth comes from (issue 18): our service vs a minimal BentoML service.

Each variant is one fresh server with 2 workers, answering ``--requests`` (default 20,000) unauthenticated
``GET`` requests to the same two paths (``/campaigns/<uuid 0>`` and ``/no/such/<uuid 0>``, over 4 keep-alive
connections, :func:`benchmarks.load.stray_paths` with ``distinct=False``) after a warm-up of 400. The workers'
resident memory (the sum over both workers of ``VmRSS`` and of ``RssAnon``, the anonymous part: heap and arenas,
not mapped files) is taken before, after each quarter and after; the growth per 1,000 requests is the
least-squares slope over those five points. An idle control (the workers' memory over ``--idle`` seconds without
requests, before the warm-up) separates growth with time from growth per request.

Services:

- ``ours``: ``surrogate serve --workers 2`` (no model loaded: nothing here comes from the embedded data set, a
  reconstruction of Tan et al. 2021, not measurements), campaigns on a SQLite file of the run's own (the
  unauthenticated requests never open it);
- ``minimal``: a BentoML 1.4 service of one ``@bentoml.api`` returning a constant, ``workers=2``, with the
  same traffic, logging and metrics options as ours, served by ``python -m bentoml serve``;
- ``ours-without-X``: our service with parts switched off in the workers by a wrapper module that the script
  writes into its temporary folder (the product is not changed): ``X`` among ``metrics`` (``MetricsMiddleware``),
  ``deadline`` (``BodyDeadlineMiddleware``), ``guard`` (``GuardMiddleware``), ``header`` (the uvicorn protocol of
  :func:`serving.timeouts.use_header_deadline_protocol`), ``freeze`` (the ``gc.freeze()`` in the service's
  ``__init__``), joined by ``+``.

Each variant runs as given and, with ``--arena``, again with ``MALLOC_ARENA_MAX`` (default 2) in the server's
environment (the workers inherit it; the script checks their ``/proc/PID/environ``). Writes
``benchmarks/results/rss_growth.json`` and ``rss_growth.md``; memory in MiB. The machine is shared, so read the
ratios (after/before, and each variant's growth against ``ours``), not the absolute figures. Usage::

    nice -n 10 .venv/bin/python benchmarks/rss_growth.py [--requests 20000] [--variants ours,minimal]
        [--arena 2] [--idle 15]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.load import _children, _free_port, _get, machine, stray_paths  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
TOKEN = "rss-token"
MEMORY_GOAL_RATIO = 1.10
"""Issue 18's goal: after 20,000 requests the workers' resident memory at most 10 % above before."""
ABLATIONS = ("metrics", "deadline", "guard", "header", "freeze")
DEFAULT_VARIANTS = "ours,minimal"

MINIMAL_SERVICE = '''"""A minimal BentoML service: one API returning a constant, 2 workers, our service's options."""

import bentoml


@bentoml.service(
    name="rss-minimal",
    workers=2,
    traffic={"timeout": 60, "concurrency": 256},
    logging={"access": {"enabled": False}},
    metrics={"enabled": False, "namespace": "bentoml_service"},
)
class Minimal:
    @bentoml.api
    def constant(self) -> dict:
        return {"answer": 42}
'''

ABLATED_SERVICE = '''"""Our service with parts switched off (RSS_GROWTH_OFF, names joined by +): a throwaway wrapper, not the product."""

import gc
import os

import bentoml

OFF = set(filter(None, os.environ.get("RSS_GROWTH_OFF", "").split("+")))
MIDDLEWARES = {"metrics": "MetricsMiddleware", "deadline": "BodyDeadlineMiddleware", "guard": "GuardMiddleware"}
skipped = {MIDDLEWARES[name] for name in OFF if name in MIDDLEWARES}
original_add = bentoml.Service.add_asgi_middleware


def add_asgi_middleware(self, middleware_cls, **options):
    if middleware_cls.__name__ in skipped:
        return None
    return original_add(self, middleware_cls, **options)


bentoml.Service.add_asgi_middleware = add_asgi_middleware
if "freeze" in OFF:
    gc.freeze = lambda: None

import uvicorn.config  # noqa: E402

original_auto = uvicorn.config.HTTP_PROTOCOLS["auto"]

from serving.service import Surrogate  # noqa: E402,F401

if "header" in OFF:
    uvicorn.config.HTTP_PROTOCOLS["auto"] = original_auto
'''


def _memory_kib(pids: list[int]) -> dict[str, int]:
    """``VmRSS`` and ``RssAnon`` (KiB), each summed over ``pids``."""
    total = {"VmRSS": 0, "RssAnon": 0}
    for pid in pids:
        for line in (Path("/proc") / str(pid) / "status").read_text().splitlines():
            key = line.split(":", 1)[0]
            if key in total:
                total[key] += int(line.split()[1])
    return total


def _environ(pid: int) -> dict[str, str]:
    raw = (Path("/proc") / str(pid) / "environ").read_bytes().split(b"\0")
    return dict(item.decode(errors="replace").split("=", 1) for item in raw if b"=" in item)


def slope_per_1000(points: list[tuple[int, float]]) -> float:
    """Least-squares slope of ``(requests, MiB)`` points, in MiB per 1,000 requests."""
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in points)
    return 1000 * sxy / sxx


@contextlib.contextmanager
def server(home: Path, service: str, off: str, arena: int | None) -> Iterator[tuple[str, int, list[str]]]:
    """A fresh 2-worker server of ``service`` (``ours`` or ``minimal``); (url, server pid, command)."""
    env = dict(
        os.environ,
        MLFLOW_TRACKING_URI=f"sqlite:///{home / 'mlflow.db'}",
        SURROGATE_HOME=str(home),
        SURROGATE_OPTUNA_STORAGE=f"sqlite:///{home / 'optuna.db'}",
        BENTOML_HOME=str(home / "bentoml"),
        BENTOML_DO_NOT_TRACK="true",
        SURROGATE_API_TOKEN=TOKEN,
        SURROGATE_WORKERS="2",
        PYTHONPATH=os.pathsep.join([str(home), str(ROOT)]),
    )
    for name in ("SURROGATE_MODEL_URI", "MALLOC_ARENA_MAX", "MALLOC_TRIM_THRESHOLD_", "BENTOML_CONFIG"):
        env.pop(name, None)
    if arena is not None:
        env["MALLOC_ARENA_MAX"] = str(arena)
    port = _free_port()
    bentoml = [sys.executable, "-m", "bentoml", "serve"]
    where = ["--host", "127.0.0.1", "--port", str(port)]
    if service == "minimal":
        (home / "rss_minimal.py").write_text(MINIMAL_SERVICE)
        command = [*bentoml, "rss_minimal:Minimal", *where]
    elif off:
        (home / "rss_ablated.py").write_text(ABLATED_SERVICE)
        env["RSS_GROWTH_OFF"] = off
        command = [*bentoml, "rss_ablated:Surrogate", *where]
    else:
        command = [str(Path(sys.executable).parent / "surrogate"), "serve", "--port", str(port), "--workers", "2"]
    log = open(home / f"server-{service}-{off or 'all'}-{arena}.log", "w")  # noqa: SIM115
    process = subprocess.Popen(command, env=env, cwd=home, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited {process.returncode}; see {log.name}")
            with contextlib.suppress(OSError):
                if _get(f"{url}/healthz", timeout=5)[0] == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start in 240 s")
            time.sleep(0.5)
        yield url, process.pid, command
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_variant(home: Path, name: str, requests: int, arena: int | None, idle_s: float) -> dict[str, Any]:
    """One variant on a fresh server: idle drift, then ``requests`` requests; memory in MiB, growth per 1,000."""
    service, _, off = name.partition("-without-")
    with server(home, service, off, arena) as (url, pid, command):
        workers = _children(pid)
        time.sleep(2)  # let the workers finish starting (the first /healthz answered)
        idle_before = _memory_kib(workers)
        time.sleep(idle_s)
        idle_after = _memory_kib(workers)
        stray_paths(url, 400, distinct=False)  # warm-up
        points: dict[str, list[tuple[int, float]]] = {"VmRSS": [], "RssAnon": []}
        sent = 0
        answers: dict[str, int] = {}
        started = time.perf_counter()
        for quarter in range(5):
            if quarter:
                share = requests // 4 + (requests % 4 if quarter == 4 else 0)
                for status, count in stray_paths(url, share, distinct=False).items():
                    answers[str(status)] = answers.get(str(status), 0) + count
                sent += share
            memory = _memory_kib(workers)
            for key in points:
                points[key].append((sent, round(memory[key] / 1024, 2)))
        elapsed = time.perf_counter() - started
        arena_seen = sorted({_environ(w).get("MALLOC_ARENA_MAX", "unset") for w in workers})
    rss, anon = points["VmRSS"], points["RssAnon"]
    return {
        "variant": name,
        "malloc_arena_max": arena,
        "malloc_arena_max_in_workers": arena_seen,
        "command": " ".join(command[1:] if command[0] == sys.executable else command),
        "workers": len(workers),
        "requests": sent,
        "answers": dict(sorted(answers.items())),
        "requests_per_s": round(sent / elapsed, 1),
        "idle_s": idle_s,
        "idle_growth_mib": {k: round((idle_after[k] - idle_before[k]) / 1024, 2) for k in idle_before},
        "rss_points_mib": rss,
        "anon_points_mib": anon,
        "rss_ratio": round(rss[-1][1] / rss[0][1], 3),
        "anon_ratio": round(anon[-1][1] / anon[0][1], 3),
        "rss_growth_mib_per_1000": round(slope_per_1000(rss), 3),
        "anon_growth_mib_per_1000": round(slope_per_1000(anon), 3),
    }


def _variants(text: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    for name in names:
        service, _, off = name.partition("-without-")
        if service not in ("ours", "minimal") or (
            off and (service != "ours" or not set(off.split("+")) <= set(ABLATIONS))
        ):
            raise argparse.ArgumentTypeError(
                f"{name!r}: a variant is ours, minimal or ours-without-X[+Y] with X, Y among {', '.join(ABLATIONS)}"
            )
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000, help="requests per variant (default 20000)")
    parser.add_argument("--variants", type=_variants, default=_variants(DEFAULT_VARIANTS), help="comma-separated")
    parser.add_argument("--arena", type=int, default=None, help="also run each variant with this MALLOC_ARENA_MAX")
    parser.add_argument("--idle", type=float, default=15.0, help="seconds of the idle control (default 15)")
    parser.add_argument("--output", default="rss_growth", help="results file stem in benchmarks/results")
    args = parser.parse_args(argv)
    if args.requests < 16:
        parser.error("--requests must be at least 16 (4 quarters over 4 connections)")
    command = "nice -n 10 .venv/bin/python benchmarks/rss_growth.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    results: dict[str, Any] = {"command": command.strip(), "nice": os.nice(0), "machine": machine()}
    results["glibc"] = os.confstr("CS_GNU_LIBC_VERSION")
    import bentoml
    import uvicorn

    results["versions"] = {"bentoml": bentoml.__version__, "uvicorn": uvicorn.__version__}
    results["loadavg_before"] = Path("/proc/loadavg").read_text().strip()
    results["variants"] = []
    with tempfile.TemporaryDirectory(prefix="rss-growth-") as folder:
        for name in args.variants:
            for arena in (None, args.arena) if args.arena is not None else (None,):
                result = run_variant(Path(folder), name, args.requests, arena, args.idle)
                print(
                    json.dumps(
                        {
                            k: result[k]
                            for k in (
                                "variant",
                                "malloc_arena_max",
                                "rss_growth_mib_per_1000",
                                "anon_growth_mib_per_1000",
                                "rss_ratio",
                            )
                        }
                    ),
                    flush=True,
                )
                results["variants"].append(result)
    results["loadavg_after"] = Path("/proc/loadavg").read_text().strip()
    reference = next((v for v in results["variants"] if v["variant"] == "ours" and v["malloc_arena_max"] is None), None)
    for result in results["variants"]:
        result["growth_vs_ours"] = (
            round(result["rss_growth_mib_per_1000"] / reference["rss_growth_mib_per_1000"], 3)
            if reference and reference["rss_growth_mib_per_1000"]
            else None
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.output}.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / f"{args.output}.md").write_text(markdown(results))
    print(markdown(results))
    return 0


def markdown(results: dict[str, Any]) -> str:
    """The results as a Markdown page."""
    box = results["machine"]
    lines = [
        "# Workers' memory growth per request: our service vs a minimal BentoML service (issue 18)",
        "",
        f"Made by `{results['command']}` (niceness {results['nice']}) on {box['cores']} cores ({box['cpu']}), "
        f"{box['memory_gib']} GiB, Python {box['python']}, {results['glibc']}, BentoML "
        f"{results['versions']['bentoml']}, uvicorn {results['versions']['uvicorn']}; the machine was shared. "
        f"Load average (1, 5, 15 min, /proc/loadavg) before: {results['loadavg_before']}; after: "
        f"{results['loadavg_after']}.",
        "",
        "Each row: a fresh server with 2 workers, unauthenticated `GET`s to the same two paths "
        "(`/campaigns/<uuid 0>`, `/no/such/<uuid 0>`) over 4 keep-alive connections after 400 of warm-up. Memory "
        "is summed over both workers: `VmRSS` (resident) and `RssAnon` (its anonymous part: heap and malloc "
        "arenas). Growth per 1,000 requests: the least-squares slope over before and each quarter. `ours` runs "
        "without a model, so nothing here comes from the embedded data set (a reconstruction of Tan et al. 2021, "
        "not measurements). The goal of issue 18 is an after/before ratio of at most "
        f"{MEMORY_GOAL_RATIO:.2f} after 20,000 requests.",
        "",
        "| variant | MALLOC_ARENA_MAX (in workers) | requests | answers | req/s | idle growth MiB (RSS) "
        "| RSS before → after MiB | RSS ratio | RSS MiB / 1,000 req | anon MiB / 1,000 req | growth vs ours |",
        "|---|---|---:|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for v in results["variants"]:
        arena = f"{v['malloc_arena_max'] or 'unset'} ({', '.join(v['malloc_arena_max_in_workers'])})"
        lines.append(
            f"| {v['variant']} | {arena} | {v['requests']:,} | {v['answers']} | {v['requests_per_s']} "
            f"| {v['idle_growth_mib']['VmRSS']} in {v['idle_s']:g} s | {v['rss_points_mib'][0][1]} → "
            f"{v['rss_points_mib'][-1][1]} | {v['rss_ratio']} | {v['rss_growth_mib_per_1000']} "
            f"| {v['anon_growth_mib_per_1000']} | {v['growth_vs_ours']} |"
        )
    lines += ["", "RSS (MiB) at each checkpoint (requests sent: MiB):", ""]
    for v in results["variants"]:
        points = ", ".join(f"{n:,}: {m}" for n, m in v["rss_points_mib"])
        lines.append(f"- {v['variant']}, MALLOC_ARENA_MAX {v['malloc_arena_max'] or 'unset'}: {points}")
    lines += ["", "Commands of the servers:", ""]
    for v in results["variants"]:
        lines.append(f"- {v['variant']}, MALLOC_ARENA_MAX {v['malloc_arena_max'] or 'unset'}: `{v['command']}`")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
