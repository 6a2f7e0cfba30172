"""What training and tuning share: loading the data, ending an MLflow run that failed or was stopped, worker
processes that die with their parent, and runs left RUNNING by a process that was killed (issue 18, finding 8)."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd


class Terminated(BaseException):  # noqa: N818 - named like KeyboardInterrupt, which it mirrors
    """SIGTERM arrived during :func:`train`: the run is ended KILLED and the worker processes stopped."""


def load_data(data_path: Path | str | None) -> tuple[pd.DataFrame, str, bool]:
    """The validated measurement frame, a description of its source, and whether it is the paper reconstruction.

    ``None`` means the embedded data set. Raises :class:`~surrogate.errors.DataValidationError`
    (every problem, row by row) for a bad file.
    """
    from surrogate.dataset import SOURCE, default_dataset_path, load_default_dataset
    from surrogate.schema import load_measurements

    if data_path is None:
        data = load_default_dataset()
        return data, f"embedded data set {default_dataset_path().name}", True
    path = Path(data_path)
    data = load_measurements(path)
    reconstruction = "source" in data.columns and bool((data["source"] == SOURCE).all())
    return data, str(path), reconstruction


def fail_run(exc: BaseException) -> None:
    """End the active run FAILED (KILLED for SIGTERM or Ctrl-C) with the reason as tag ``error``.

    Never leaves a run RUNNING.
    """
    killed = isinstance(exc, (Terminated, KeyboardInterrupt))
    try:
        mlflow.set_tag("error", f"{type(exc).__name__}: {exc}"[:5000])
    finally:
        mlflow.end_run("KILLED" if killed else "FAILED")


# ---------------------------------------------------------------------- worker processes die with `train`
PARENT_POLL_S = 0.5
"""Seconds between a worker's checks that the process that started it is still its parent."""


def _watch(parent: int) -> None:
    import time

    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    os._exit(1)  # the parent died (even by kill -9): the worker was re-parented, so it ends at once


def watch_parent() -> None:
    """Initializer of each loky worker: end this worker as soon as its parent (``surrogate train``) is gone.

    A daemon thread polls ``os.getppid()`` every :data:`PARENT_POLL_S` s; when the parent dies, Linux re-parents
    the worker (to init or a subreaper) and the thread ends the process. Unlike ``PR_SET_PDEATHSIG``, this does
    not depend on which thread of the parent started the worker (loky starts some from its manager thread).
    """
    parent = os.getppid()
    if parent == 1:  # already orphaned before the initializer ran
        os._exit(1)
    threading.Thread(target=_watch, args=(parent,), name="watch-parent", daemon=True).start()


def workers_die_with_parent() -> Any:
    """A ``joblib.parallel_config`` whose loky workers run :func:`watch_parent` first (joblib's public API).

    Every ``joblib.Parallel`` inside it that uses the default backend (cross-validation, tuning) gets such workers.
    """
    from joblib import parallel_config

    return parallel_config(backend="loky", initializer=watch_parent)


# ---------------------------------------------------------------------- runs left RUNNING by a dead process
HOST_TAG = "host"
PID_TAG = "pid"
PID_STARTED_TAG = "pid_started"
"""The process's start time in clock ticks since boot (``/proc/PID/stat`` field 22), so a reused pid is told apart."""
ENDED_BY_TAG = "ended_by"


def _process_started(pid: int) -> str | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[19]  # field 22 of the whole line: start time


def process_tags() -> dict[str, str]:
    """Tags naming this process: ``host``, ``pid`` and ``pid_started`` (empty where /proc is missing)."""
    return {
        HOST_TAG: socket.gethostname(),
        PID_TAG: str(os.getpid()),
        PID_STARTED_TAG: _process_started(os.getpid()) or "",
    }


def _process_is_gone(tags: dict[str, str]) -> bool:
    """Whether the process a run's tags name (on this host) no longer runs (its pid is free or reused)."""
    try:
        pid = int(tags[PID_TAG])
    except (KeyError, ValueError):
        return False
    started = _process_started(pid)
    return started is None or (bool(tags.get(PID_STARTED_TAG)) and started != tags[PID_STARTED_TAG])


def mark_runs_of_dead_processes(experiment_name: str) -> list[str]:
    """End KILLED every RUNNING run of ``experiment_name`` whose process, on this host, is gone; their ids.

    Such runs were left by a ``kill -9`` (or a crash) of ``surrogate train``/``tune``: the process could not end
    them. Each gets the tag ``ended_by`` saying why and which process found it; its nested runs still RUNNING are
    ended with it. Runs of other hosts, and runs without the ``pid`` tag (made before it existed), are left
    alone: from here nobody can tell whether their process still runs.
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return []
    host = socket.gethostname()
    running = client.search_runs([experiment.experiment_id], "attributes.status = 'RUNNING'", max_results=1000)
    dead = [
        run
        for run in running
        if run.data.tags.get(HOST_TAG) == host
        and run.info.run_id != _active_run_id()
        and _process_is_gone(run.data.tags)
    ]
    marked: list[str] = []
    for run in dead:
        reason = (
            f"KILLED: process {run.data.tags[PID_TAG]} on {host} ended without closing this run (kill -9 or a "
            f"crash); found by process {os.getpid()} when it started"
        )
        children = [r for r in running if r.data.tags.get("mlflow.parentRunId") == run.info.run_id]
        for ended in (*children, run):
            client.set_tag(ended.info.run_id, ENDED_BY_TAG, reason)
            client.set_terminated(ended.info.run_id, status="KILLED")
            marked.append(ended.info.run_id)
    return marked


def _active_run_id() -> str | None:
    active = mlflow.active_run()
    return active.info.run_id if active is not None else None
