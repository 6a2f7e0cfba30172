"""Where Optuna studies (searches and campaigns) live: one function resolves the storage.

Order of precedence: an explicit URL (``--storage``), then the environment
variable ``SURROGATE_OPTUNA_STORAGE``, then the local default, an SQLite file
``optuna.db`` under ``$SURROGATE_HOME`` (or ``./.surrogate/`` when unset) that
needs no server. Any SQLAlchemy URL works, PostgreSQL included
(``postgresql://user@host:5432/db``); several processes or hosts can then share
one study. RDB storages record a heartbeat of running trials so that a crashed
worker's trial is marked failed (see :func:`fail_stale_trials`).
"""

from __future__ import annotations

import hashlib
import os
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna

STORAGE_ENV = "SURROGATE_OPTUNA_STORAGE"
HOME_ENV = "SURROGATE_HOME"
DEFAULT_FILENAME = "optuna.db"
HEARTBEAT_INTERVAL_S = 10
"""Seconds between heartbeats of a running trial (used by ``study.optimize`` workers)."""
GRACE_PERIOD_S = 30
"""Seconds without a heartbeat after which a running trial counts as crashed and is marked FAIL."""


def surrogate_home() -> Path:
    """The project's local state folder: ``$SURROGATE_HOME`` or ``./.surrogate``."""
    return Path(os.environ.get(HOME_ENV) or ".surrogate")


def default_storage_url() -> str:
    """The local SQLite URL (``sqlite:///<home>/optuna.db``); the folder is created if missing."""
    home = surrogate_home()
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(home / DEFAULT_FILENAME).resolve()}"


def resolve_storage_url(url: str | None = None) -> str:
    """``url`` if given, else ``$SURROGATE_OPTUNA_STORAGE``, else :func:`default_storage_url`."""
    chosen = (url or "").strip() or os.environ.get(STORAGE_ENV, "").strip()
    return chosen or default_storage_url()


def database_url(url: str) -> str:
    """``url`` with a driver SQLAlchemy can load: plain ``postgresql://`` uses psycopg2 unless psycopg 3 is installed."""
    if url.startswith(("postgresql://", "postgres://")):
        import importlib.util

        if importlib.util.find_spec("psycopg") is None:
            return "postgresql+psycopg2://" + url.split("://", 1)[1]
    return url


def get_storage(
    url: str | None = None,
    heartbeat_interval: int | None = HEARTBEAT_INTERVAL_S,
    grace_period: int | None = GRACE_PERIOD_S,
) -> optuna.storages.BaseStorage:
    """An Optuna storage for ``url`` (resolved by :func:`resolve_storage_url`).

    SQL URLs give an :class:`optuna.storages.RDBStorage` with a heartbeat every
    ``heartbeat_interval`` seconds (``None`` turns it off) and a ``grace_period``
    in seconds; SQLite gets a 30 s lock timeout. Raises :class:`InputError` for
    a URL that is not a database URL or cannot be opened.
    """
    from surrogate.errors import InputError

    resolved = database_url(resolve_storage_url(url))
    if "://" not in resolved:
        raise InputError(
            f"storage: {resolved!r} is not a database URL (e.g. sqlite:///optuna.db or postgresql://user@host/db)"
        )
    engine_kwargs: dict = {}
    if resolved.startswith("sqlite"):
        engine_kwargs["connect_args"] = {"timeout": 30}
    else:
        engine_kwargs["pool_pre_ping"] = True
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                resolved,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period if heartbeat_interval else None,
            )
    except ImportError as exc:
        raise InputError(
            f"storage: the database driver for {resolved.split(':')[0]!r} is not installed ({exc})"
        ) from None
    except Exception as exc:  # SQLAlchemy raises many types for a bad URL or an unreachable server
        raise InputError(f"storage: cannot open {_redact(resolved)} ({type(exc).__name__}: {exc})") from None


def fail_stale_trials(study: optuna.Study) -> list[int]:
    """Mark running trials whose worker stopped sending heartbeats as FAIL; returns their numbers."""
    running = {t.number for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    failed = {t.number for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,))}
    return sorted(running & failed)


_PROCESS_LOCKS: dict[str, threading.Lock] = {}
_PROCESS_LOCKS_GUARD = threading.Lock()


@contextmanager
def exclusive(storage: optuna.storages.BaseStorage, key: str) -> Iterator[None]:
    """Hold a lock named ``key`` across every process (and host) using ``storage`` while the block runs.

    PostgreSQL: a session advisory lock (``pg_advisory_lock``) on a 64-bit hash of ``key``, held on a
    connection of the storage's engine, so it works across hosts. SQLite files: an exclusive ``flock`` on
    ``<database>.<hash>.lock`` next to the database (processes of one host, which is all SQLite serves).
    Other storages (in-memory, MySQL, ...): a lock within this process only.
    """
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    url = storage.url if isinstance(storage, optuna.storages.RDBStorage) else ""
    if url.startswith("postgresql"):
        import sqlalchemy

        number = int.from_bytes(digest[:8], "big", signed=True)
        with storage.engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": number})
            try:
                yield
            finally:
                connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": number})
                connection.commit()
        return
    database = url.split(":///", 1)[1] if url.startswith("sqlite:///") else ""
    if database and database != ":memory:":
        import fcntl

        with open(f"{database}.{digest[:6].hex()}.lock", "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    with _PROCESS_LOCKS_GUARD:
        lock = _PROCESS_LOCKS.setdefault(key, threading.Lock())
    with lock:
        yield


def _redact(url: str) -> str:
    """The URL without a password, for messages."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        user = credentials.split(":", 1)[0]
        return f"{scheme}://{user}@{host}"
    return url
