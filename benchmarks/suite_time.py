"""Where the test suite's time goes: CPU seconds (user + sys) and wall seconds per file and per test.

Runs the README's test command (``.venv/bin/python -m pytest``, with pyproject's addopts) once, with
``benchmarks/suite_time_plugin.py`` loaded in every xdist worker, and writes
``benchmarks/results/suite_time.md`` and ``.json`` (or ``--out``). This process makes itself a child
subreaper (Linux ``PR_SET_CHILD_SUBREAPER``), so the run's total CPU also counts the services that tests start
in the background and that outlive their parent shell. The machine is shared: reason in CPU seconds, not wall.

    .venv/bin/python benchmarks/suite_time.py                                  # the whole suite, as configured
    .venv/bin/python benchmarks/suite_time.py --label after -- tests/test_docs_commands.py -n 0
    .venv/bin/python benchmarks/suite_time.py --compare benchmarks/results/suite_time_before.json

``--root DIR`` runs another checkout's suite with that checkout's ``.venv`` (a baseline in the same session).
``--compare FILE`` adds a before/after column per file from an earlier run's JSON.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
PR_SET_CHILD_SUBREAPER = 36


def _become_subreaper() -> None:
    """Orphaned descendants (``setsid cmd &`` services) are re-parented to this process, so their CPU counts."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _reap_all(grace_s: float) -> list[int]:
    """Wait for every remaining descendant; after ``grace_s`` kill the ones still alive (by pid) and return them."""
    deadline = time.monotonic() + grace_s
    killed: list[int] = []
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return killed
        if pid:
            continue
        if time.monotonic() > deadline:
            for line in Path("/proc").glob("[0-9]*/stat"):
                try:
                    fields = line.read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[1]) == os.getpid():  # field 4 (ppid): one of this process's children
                    pid = int(line.parent.name)
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
            deadline = time.monotonic() + 10
        time.sleep(0.2)


def run_suite(root: Path, pytest_args: list[str]) -> dict:
    """Run ``root``'s suite with the plugin; return per-test lines and the run's totals."""
    _become_subreaper()
    with tempfile.TemporaryDirectory(prefix="suite-time-") as folder:
        env = {
            **os.environ,
            "SUITE_TIME_OUT": folder,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH", "")])),
        }
        command = [str(root / ".venv" / "bin" / "python"), "-m", "pytest", "-p", "suite_time_plugin", *pytest_args]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
        wall_s = time.perf_counter() - start
        killed = _reap_all(grace_s=30)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        tests = [json.loads(line) for path in Path(folder).glob("*.jsonl") for line in path.read_text().splitlines()]
    return {
        "command": " ".join(command[1:]),
        "root": str(root),
        "returncode": done.returncode,
        "summary": done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-500:],
        "failures_text": done.stdout[done.stdout.find("= FAILURES =") :][-20000:]
        if "= FAILURES =" in done.stdout
        else "",
        "short_summary": [line for line in done.stdout.splitlines() if line.startswith(("FAILED", "ERROR", "SKIPPED"))],
        "wall_s": round(wall_s, 1),
        "cpu_user_s": round(after.ru_utime - before.ru_utime, 1),
        "cpu_sys_s": round(after.ru_stime - before.ru_stime, 1),
        "leftover_killed": killed,
        "loadavg_end": os.getloadavg(),
        "tests": tests,
    }


def per_file(tests: list[dict]) -> dict[str, dict]:
    """CPU and wall seconds, number of tests and worker(s) per test file."""
    files: dict[str, dict] = defaultdict(lambda: {"cpu_s": 0.0, "wall_s": 0.0, "tests": 0, "workers": set()})
    for test in tests:
        entry = files[test["file"]]
        entry["cpu_s"] += test["cpu_s"]
        entry["wall_s"] += test["wall_s"]
        entry["tests"] += 1
        entry["workers"].add(test["worker"])
    return {
        name: {
            **entry,
            "cpu_s": round(entry["cpu_s"], 1),
            "wall_s": round(entry["wall_s"], 1),
            "workers": sorted(entry["workers"]),
        }
        for name, entry in sorted(files.items(), key=lambda item: -item[1]["cpu_s"])
    }


def report(run: dict, label: str, compare: dict | None) -> str:
    """The Markdown report of one run (and the per-file ratio to ``compare``'s run, if given)."""
    files = per_file(run["tests"])
    workers: dict[str, float] = defaultdict(float)
    for test in run["tests"]:
        workers[test["worker"]] += test["wall_s"]
    in_tests = sum(entry["cpu_s"] for entry in files.values())
    total_cpu = run["cpu_user_s"] + run["cpu_sys_s"]
    lines = [
        f"# Test suite time: {label}",
        "",
        f"Command: `{run['command']}` in `{run['root']}` (produced by `python benchmarks/suite_time.py`).",
        f"Result: {run['summary']} (exit {run['returncode']}); load average at the end {run['loadavg_end']}.",
        "",
        f"- Wall: **{run['wall_s']:.0f} s**. CPU of the whole run (every process, background services included): "
        f"**{total_cpu:.0f} s** (user {run['cpu_user_s']:.0f} s, sys {run['cpu_sys_s']:.0f} s).",
        f"- CPU measured inside tests (worker + waited-for children): {in_tests:.0f} s; the rest "
        f"({total_cpu - in_tests:.0f} s) is collection, xdist start-up and background services.",
        "- Busy wall time per worker (sum of its tests' wall time): "
        + ", ".join(f"{w} {s:.0f} s" for w, s in sorted(workers.items())),
        "- Budget: 2 cores x 300 s = 600 CPU-s at load <= 2; the critical path is the busiest worker.",
        "",
        "## Per file (CPU-s = user + sys of the worker and its waited-for children)",
        "",
    ]
    old = per_file(compare["tests"]) if compare else {}
    header = "| file | tests | CPU-s | wall-s | worker |"
    rule = "|---|---:|---:|---:|---|"
    if compare:
        header += " CPU-s before | ratio |"
        rule += "---:|---:|"
    lines += [header, rule]
    for name, entry in files.items():
        row = f"| {name} | {entry['tests']} | {entry['cpu_s']:.1f} | {entry['wall_s']:.1f} | {','.join(entry['workers'])} |"
        if compare:
            before = old.get(name, {}).get("cpu_s")
            row += f" {before:.1f} | {entry['cpu_s'] / before:.2f} |" if before else " - | - |"
        lines.append(row)
    if compare:
        gone = sorted(set(old) - set(files))
        if gone:
            lines += ["", "Files of the earlier run not in this one: " + ", ".join(gone)]
        before_total = compare["cpu_user_s"] + compare["cpu_sys_s"]
        lines += [
            "",
            f"Whole run: CPU {total_cpu:.0f} s against {before_total:.0f} s before "
            f"({total_cpu / before_total:.2f}x); wall {run['wall_s']:.0f} s against {compare['wall_s']:.0f} s.",
        ]
    lines += [
        "",
        "## The 40 most expensive tests (CPU-s)",
        "",
        "| test | CPU-s | wall-s | outcome |",
        "|---|---:|---:|---|",
    ]
    for test in sorted(run["tests"], key=lambda t: -t["cpu_s"])[:40]:
        lines.append(f"| `{test['nodeid']}` | {test['cpu_s']:.1f} | {test['wall_s']:.1f} | {test['outcome']} |")
    blocks = [(name, value) for test in run["tests"] for name, value in test.get("properties", {}).items()]
    if blocks:
        lines += [
            "",
            "## Shell blocks of the docs test (foreground commands; services started in the background are not counted)",
            "",
        ]
        lines += ["| block | CPU-s | wall-s |", "|---|---:|---:|"]
        lines += [f"| {name} | {value['cpu_s']:.1f} | {value['wall_s']:.1f} |" for name, value in blocks]
    if run.get("short_summary"):
        lines += ["", "## Not passed", "", *[f"- `{line}`" for line in run["short_summary"]]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=HERE.parent, help="the checkout whose suite runs")
    parser.add_argument("--label", default="current", help="a name for this run, in the report's title")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "suite_time.md", help="the .md to write")
    parser.add_argument("--compare", type=Path, help="an earlier run's JSON: adds before/after per file")
    parser.add_argument("--from-json", type=Path, help="rewrite the report of an earlier run's JSON (no run)")
    parser.add_argument(
        "--write-durations",
        type=Path,
        metavar="FILE",
        help="also write CPU-s per test file to FILE (tests/durations.json: tests/conftest.py runs heavy files first)",
    )
    parser.add_argument("pytest_args", nargs="*", help="after --: extra pytest arguments (files, -n ...)")
    args = parser.parse_args(argv)
    run = json.loads(args.from_json.read_text()) if args.from_json else run_suite(args.root.resolve(), args.pytest_args)
    compare = json.loads(args.compare.read_text()) if args.compare else None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not args.from_json:
        args.out.with_suffix(".json").write_text(json.dumps(run, indent=1) + "\n")
    args.out.write_text(report(run, args.label, compare))
    if args.write_durations:
        cpu_s = {name: entry["cpu_s"] for name, entry in per_file(run["tests"]).items()}
        args.write_durations.write_text(json.dumps(cpu_s, indent=1) + "\n")
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
