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

Each variant runs with each of ``--settings`` (the service itself unchanged; :data:`SETTINGS`): ``as-is``;
``arena2`` (``MALLOC_ARENA_MAX=2``), ``arena2-trim`` (and ``MALLOC_TRIM_THRESHOLD_=131072``), ``otel-sdk-off``
(``OTEL_SDK_DISABLED=true``) in the server's environment (the workers inherit it; the script checks their
``/proc/PID/environ``); ``untraced`` and ``timeout5``, a BentoML configuration file (``BENTOML_CONFIG``) that
excludes every URL from BentoML's OpenTelemetry middleware (``tracing.excluded_urls: '.*'``) or sets the traffic
timeout to 5 s; ``untraced-decorator``, the same exclusion as an argument of the service's
``@bentoml.service`` (for ours through the wrapper module: the one-line change proposed for serving/service.py).
After its requests the minimal service answers ``POST /probe`` with one worker's timers still
scheduled on its event loop (by callback) and the OpenTelemetry SDK spans alive in it: what the memory holds.

Writes ``benchmarks/results/<--output>.json`` and ``.md`` (default ``rss_growth``); memory in MiB. The machine is
shared, so read the ratios (after/before, and each row's growth against ``ours`` as-is), not the absolute
figures. Usage::

    nice -n 10 .venv/bin/python benchmarks/rss_growth.py [--requests 20000] [--variants ours,minimal]
        [--settings as-is,arena2,untraced-decorator] [--idle 15] [--rest 0] [--output rss_growth]

``--rest S`` (e.g. 70, more than the 60 s traffic timeout): after the requests, S seconds without any, then the
same requests again; whether the second batch grows the workers further tells a bounded retention (memory
reused once BentoML's timers of the first batch have fired) from a leak.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.load import _children, _free_port, machine, running_server, stray_paths  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
TOKEN = "rss-token"
MEMORY_GOAL_RATIO = 1.10
"""Issue 18's goal: after 20,000 requests the workers' resident memory at most 10 % above before."""
ABLATIONS = ("metrics", "deadline", "guard", "header", "freeze")
DEFAULT_VARIANTS = "ours,minimal"
DEFAULT_SETTINGS = "as-is,arena2,untraced-decorator"

MINIMAL_SERVICE = '''"""A minimal BentoML service: one API returning a constant, 2 workers, our service's options; and a probe."""

import asyncio
import collections
import gc
import os

import bentoml

EXCLUDED = os.environ.get("RSS_GROWTH_TRACING_EXCLUDED")


@bentoml.service(
    name="rss-minimal",
    workers=2,
    traffic={"timeout": 60, "concurrency": 256},
    logging={"access": {"enabled": False}},
    metrics={"enabled": False, "namespace": "bentoml_service"},
    **({"tracing": {"excluded_urls": EXCLUDED}} if EXCLUDED else {}),
)
class Minimal:
    @bentoml.api
    def constant(self) -> dict:
        return {"answer": 42}

    @bentoml.api
    async def probe(self) -> dict:
        """This worker's timers still scheduled on its event loop (by callback) and OpenTelemetry spans alive."""
        from opentelemetry.sdk.trace import Span

        loop = asyncio.get_running_loop()
        timers = collections.Counter(
            getattr(getattr(h, "_callback", None), "__qualname__", "other")
            for h in getattr(loop, "_scheduled", [])
            if not h.cancelled()
        )
        spans = sum(isinstance(o, Span) for o in gc.get_objects())
        return {"pid": os.getpid(), "scheduled_timers": dict(timers), "live_spans": spans}
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
EXCLUDED = os.environ.get("RSS_GROWTH_TRACING_EXCLUDED")
if EXCLUDED:  # what a tracing={"excluded_urls": ...} argument in serving/service.py's @bentoml.service would do
    original_service = bentoml.service

    def service(*args, **options):
        options.setdefault("tracing", {"excluded_urls": EXCLUDED})
        return original_service(*args, **options)

    bentoml.service = service
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


SETTINGS: dict[str, str] = {
    "as-is": "nothing added",
    "arena2": "MALLOC_ARENA_MAX=2 in the server's environment",
    "arena2-trim": "MALLOC_ARENA_MAX=2 and MALLOC_TRIM_THRESHOLD_=131072 in the server's environment",
    "untraced": "BENTOML_CONFIG: services.NAME.tracing.excluded_urls: '.*' (OpenTelemetry skips every request)",
    "otel-sdk-off": "OTEL_SDK_DISABLED=true in the server's environment (no-op tracer)",
    "untraced-decorator": "tracing={'excluded_urls': '.*'} added to the service's @bentoml.service (ours: by the "
    "wrapper module, as the proposed one-line change to serving/service.py would)",
    "timeout5": "BENTOML_CONFIG: services.NAME.traffic.timeout: 5 (BentoML's per-request timer lives 5 s, not 60)",
}
"""What each setting adds to a server (the service unchanged); NAME is the service's BentoML name."""


def _setting_env(home: Path, setting: str, service_name: str) -> dict[str, str]:
    """The environment variables of ``setting`` (a BentoML configuration file written into ``home`` if needed)."""
    if setting == "arena2":
        return {"MALLOC_ARENA_MAX": "2"}
    if setting == "arena2-trim":
        return {"MALLOC_ARENA_MAX": "2", "MALLOC_TRIM_THRESHOLD_": "131072"}
    if setting == "otel-sdk-off":
        return {"OTEL_SDK_DISABLED": "true"}
    if setting == "untraced-decorator":
        return {"RSS_GROWTH_TRACING_EXCLUDED": ".*"}
    if setting in ("untraced", "timeout5"):
        inner = "tracing:\n      excluded_urls: '.*'" if setting == "untraced" else "traffic:\n      timeout: 5"
        config = home / f"bentoml-{service_name}-{setting}.yaml"
        config.write_text(f"services:\n  {service_name}:\n    {inner}\n")
        return {"BENTOML_CONFIG": str(config)}
    return {}


@contextlib.contextmanager
def server(home: Path, service: str, off: str, setting: str) -> Iterator[tuple[str, int, list[str], dict[str, str]]]:
    """A fresh 2-worker server of ``service`` (``ours`` or ``minimal``) with ``setting``; (url, pid, command, env added)."""
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
    for name in (
        "SURROGATE_MODEL_URI",
        "BENTOML_CONFIG",
        "OTEL_SDK_DISABLED",
        *(k for k in env if k.startswith("MALLOC_")),
    ):
        env.pop(name, None)
    added = _setting_env(home, setting, "rss-minimal" if service == "minimal" else "llto-surrogate")
    env.update(added)
    port = _free_port()
    bentoml = [sys.executable, "-m", "bentoml", "serve"]
    where = ["--host", "127.0.0.1", "--port", str(port)]
    if service == "minimal":
        (home / "rss_minimal.py").write_text(MINIMAL_SERVICE)
        command = [*bentoml, "rss_minimal:Minimal", *where]
    elif off or setting == "untraced-decorator":
        (home / "rss_ablated.py").write_text(ABLATED_SERVICE)
        if off:
            env["RSS_GROWTH_OFF"] = off
            added["RSS_GROWTH_OFF"] = off
        command = [*bentoml, "rss_ablated:Surrogate", *where]
    else:
        command = [str(Path(sys.executable).parent / "surrogate"), "serve", "--port", str(port), "--workers", "2"]
    log = home / f"server-{service}-{off or 'all'}-{setting}.log"
    with running_server(command, env, home, log, port) as (url, pid):
        yield url, pid, command, added


def _probe(url: str) -> dict[str, Any] | None:
    """The minimal service's ``/probe`` answer (one worker's scheduled timers and live spans), or None."""
    request = urllib.request.Request(f"{url}/probe", data=b"{}", headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())
    except (OSError, ValueError):
        return None


def run_variant(
    home: Path, name: str, setting: str, requests: int, idle_s: float, rest_s: float = 0.0
) -> dict[str, Any]:
    """One variant on a fresh server: idle drift, then ``requests`` requests; memory in MiB, growth per 1,000.

    With ``rest_s``: then ``rest_s`` seconds without requests and the same ``requests`` again (``second_batch``).
    """
    service, _, off = name.partition("-without-")
    with server(home, service, off, setting) as (url, pid, command, added):
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
        probe = _probe(url) if service == "minimal" else None
        second: dict[str, Any] | None = None
        if rest_s:  # the same requests again after the BentoML timers of the first batch have fired
            time.sleep(rest_s)
            rested = _memory_kib(workers)["VmRSS"] / 1024
            stray_paths(url, requests, distinct=False)
            again = _memory_kib(workers)["VmRSS"] / 1024
            second = {
                "rest_s": rest_s,
                "rss_after_rest_mib": round(rested, 2),
                "rss_after_second_batch_mib": round(again, 2),
                "second_batch_ratio_to_first_after": round(again / (points["VmRSS"][-1][1]), 3),
                "probe_after_rest_and_second_batch": _probe(url) if service == "minimal" else None,
            }
        environs = [_environ(w) for w in workers]
    rss, anon = points["VmRSS"], points["RssAnon"]
    return {
        "variant": name,
        "setting": setting,
        "setting_added": added,
        "setting_in_workers": all(all(e.get(k) == v for k, v in added.items()) for e in environs),
        "command": " ".join(command[1:] if command[0] == sys.executable else command),
        "workers": len(workers),
        "requests": sent,
        "answers": dict(sorted(answers.items())),
        "requests_per_s": round(sent / elapsed, 1),
        "elapsed_s": round(elapsed, 1),
        "idle_s": idle_s,
        "idle_growth_mib": {k: round((idle_after[k] - idle_before[k]) / 1024, 2) for k in idle_before},
        "rss_points_mib": rss,
        "anon_points_mib": anon,
        "rss_ratio": round(rss[-1][1] / rss[0][1], 3),
        "anon_ratio": round(anon[-1][1] / anon[0][1], 3),
        "rss_growth_mib_per_1000": round(slope_per_1000(rss), 3),
        "anon_growth_mib_per_1000": round(slope_per_1000(anon), 3),
        "probe_after": probe,
        "second_batch": second,
    }


def _names(text: str, allowed: Any) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    for name in names:
        if not allowed(name):
            raise argparse.ArgumentTypeError(f"{name!r} is not allowed here")
    return names


def _is_variant(name: str) -> bool:
    service, _, off = name.partition("-without-")
    if not off:
        return service in ("ours", "minimal")
    return service == "ours" and set(off.split("+")) <= set(ABLATIONS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000, help="requests per variant (default 20000)")
    parser.add_argument(
        "--variants",
        type=lambda t: _names(t, _is_variant),
        default=_names(DEFAULT_VARIANTS, _is_variant),
        help=f"comma-separated: ours, minimal, ours-without-X[+Y] (X among {', '.join(ABLATIONS)}); default {DEFAULT_VARIANTS}",
    )
    parser.add_argument(
        "--settings",
        type=lambda t: _names(t, SETTINGS.__contains__),
        default=_names(DEFAULT_SETTINGS, SETTINGS.__contains__),
        help=f"comma-separated, each variant runs with each: {', '.join(SETTINGS)}; default {DEFAULT_SETTINGS}",
    )
    parser.add_argument("--idle", type=float, default=15.0, help="seconds of the idle control (default 15)")
    parser.add_argument(
        "--rest",
        type=float,
        default=0.0,
        help="then wait this many seconds (more than the traffic timeout, 60 s) and send the requests again",
    )
    parser.add_argument("--output", default="rss_growth", help="results file stem in benchmarks/results")
    args = parser.parse_args(argv)
    if args.requests < 16:
        parser.error("--requests must be at least 16 (4 quarters over 4 connections)")
    command = "nice -n 10 .venv/bin/python benchmarks/rss_growth.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    import bentoml
    import opentelemetry.sdk.version
    import uvicorn

    results: dict[str, Any] = {
        "command": command.strip(),
        "nice": os.nice(0),
        "machine": machine(),
        "glibc": os.confstr("CS_GNU_LIBC_VERSION"),
        "versions": {
            "bentoml": bentoml.__version__,
            "uvicorn": uvicorn.__version__,
            "opentelemetry-sdk": opentelemetry.sdk.version.__version__,
        },
        "settings": {k: SETTINGS[k] for k in args.settings},
        "loadavg_before": Path("/proc/loadavg").read_text().strip(),
        "variants": [],
    }
    with tempfile.TemporaryDirectory(prefix="rss-growth-") as folder:
        for name in args.variants:
            for setting in args.settings:
                result = run_variant(Path(folder), name, setting, args.requests, args.idle, args.rest)
                keys = ("variant", "setting", "rss_growth_mib_per_1000", "rss_ratio", "probe_after")
                print(json.dumps({k: result[k] for k in keys}), flush=True)
                results["variants"].append(result)
    results["loadavg_after"] = Path("/proc/loadavg").read_text().strip()
    reference = next((v for v in results["variants"] if (v["variant"], v["setting"]) == ("ours", "as-is")), None)
    for result in results["variants"]:
        base = reference["rss_growth_mib_per_1000"] if reference else 0
        result["growth_vs_ours_as_is"] = round(result["rss_growth_mib_per_1000"] / base, 3) if base else None
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.output}.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / f"{args.output}.md").write_text(markdown(results))
    print(markdown(results))
    return 0


def markdown(results: dict[str, Any]) -> str:
    """The results as a Markdown page."""
    box = results["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in results["versions"].items())
    lines = [
        "# Workers' memory growth per request: our service vs a minimal BentoML service (issue 18)",
        "",
        f"Made by `{results['command']}` (niceness {results['nice']}) on {box['cores']} cores ({box['cpu']}), "
        f"{box['memory_gib']} GiB, Python {box['python']}, {results['glibc']}, {versions}; the machine was shared. "
        f"Load average (1, 5, 15 min, /proc/loadavg) before: {results['loadavg_before']}; after: "
        f"{results['loadavg_after']}.",
        "",
        "Each row: a fresh server with 2 workers, unauthenticated `GET`s to the same two paths "
        "(`/campaigns/<uuid 0>`, `/no/such/<uuid 0>`) over 4 keep-alive connections after 400 of warm-up. Memory "
        "is summed over both workers: `VmRSS` (resident) and `RssAnon` (its anonymous part: heap and malloc "
        "arenas). Growth per 1,000 requests: the least-squares slope over before and each quarter. `ours` runs "
        "without a model, so nothing here comes from the embedded data set (a reconstruction of Tan et al. 2021, "
        "not measurements). Issue 18's goal: an RSS ratio (after/before) of at most "
        f"{MEMORY_GOAL_RATIO:.2f} after 20,000 requests. Read the ratios: the machine is shared.",
        "",
        "Settings (the services unchanged):",
        "",
        *(f"- `{k}`: {v}" for k, v in results["settings"].items()),
        "",
        "| variant | setting | in workers' env | requests | answers | req/s | idle growth, RSS MiB "
        "| RSS before → after, MiB | RSS ratio | RSS MiB / 1,000 req | anon MiB / 1,000 req | growth vs ours as-is |",
        "|---|---|---|---:|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for v in results["variants"]:
        lines.append(
            f"| {v['variant']} | {v['setting']} | {'yes' if v['setting_in_workers'] else 'NO'} | {v['requests']:,} "
            f"| {v['answers']} | {v['requests_per_s']} | {v['idle_growth_mib']['VmRSS']} in {v['idle_s']:g} s "
            f"| {v['rss_points_mib'][0][1]} → {v['rss_points_mib'][-1][1]} | {v['rss_ratio']} "
            f"| {v['rss_growth_mib_per_1000']} | {v['anon_growth_mib_per_1000']} | {v['growth_vs_ours_as_is']} |"
        )
    probes = [v for v in results["variants"] if v.get("probe_after")]
    if probes:
        lines += [
            "",
            "The minimal service's `/probe` right after the requests (one worker: the timers still scheduled on its "
            "event loop, by callback, and the OpenTelemetry SDK spans alive):",
            "",
        ]
        for v in probes:
            probe = v["probe_after"]
            lines.append(
                f"- {v['variant']}, {v['setting']}: timers {probe['scheduled_timers']}, live spans "
                f"{probe['live_spans']:,} (worker {probe['pid']})"
            )
    seconds = [v for v in results["variants"] if v.get("second_batch")]
    if seconds:
        lines += [
            "",
            "Second batch: after the requests, a rest without requests, then the same requests again (RSS, MiB):",
            "",
        ]
        for v in seconds:
            b = v["second_batch"]
            probe = b["probe_after_rest_and_second_batch"]
            lines.append(
                f"- {v['variant']}, {v['setting']}: after the first batch {v['rss_points_mib'][-1][1]}, after "
                f"{b['rest_s']:g} s of rest {b['rss_after_rest_mib']}, after the second batch "
                f"{b['rss_after_second_batch_mib']} (second/first {b['second_batch_ratio_to_first_after']})"
                + (
                    f"; probe then: timers {probe['scheduled_timers']}, live spans {probe['live_spans']:,}"
                    if probe
                    else ""
                )
            )
    lines += ["", "RSS (MiB) at each checkpoint (requests sent: MiB):", ""]
    for v in results["variants"]:
        points = ", ".join(f"{n:,}: {m}" for n, m in v["rss_points_mib"])
        lines.append(f"- {v['variant']}, {v['setting']}: {points}")
    lines += ["", "Commands of the servers:", ""]
    for v in results["variants"]:
        lines.append(f"- {v['variant']}, {v['setting']}: `{v['command']}` with {v['setting_added'] or 'nothing added'}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
