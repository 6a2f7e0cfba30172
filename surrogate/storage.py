"""Where Optuna studies (searches and campaigns) live: one function resolves the storage.

Order of precedence: an explicit URL (``--storage``), then the environment
variable ``SURROGATE_OPTUNA_STORAGE``, then the local default, an SQLite file
``optuna.db`` under ``$SURROGATE_HOME`` (or ``./.surrogate/`` when unset) that
needs no server. Any SQLAlchemy URL works, PostgreSQL included
(``postgresql://user@host:5432/db``); several processes or hosts can then share
one study. RDB storages record a heartbeat of running trials of ``study.optimize``
workers so that a crashed worker's trial is marked failed (see
:func:`fail_stale_trials`); campaign suggestions use leases instead (see
:mod:`surrogate.campaign`).

Read-only commands call :func:`store_exists` first, so that they never create a
database file. :func:`write_trials` writes many trials in one database
transaction (all or nothing), which the per-trial Optuna API cannot do.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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
    from surrogate.settings import get_settings

    return get_settings().home


def default_storage_url(create: bool = True) -> str:
    """The local SQLite URL (``sqlite:///<home>/optuna.db``); the folder is created if missing and ``create``."""
    home = surrogate_home()
    if create:
        home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(home / DEFAULT_FILENAME).resolve()}"


def resolve_storage_url(url: str | None = None, create: bool = True) -> str:
    """``url`` if given, else ``$SURROGATE_OPTUNA_STORAGE``, else :func:`default_storage_url`."""
    from surrogate.settings import get_settings

    chosen = (url or "").strip() or get_settings().optuna_storage or ""
    return chosen or default_storage_url(create=create)


def store_exists(url: str | None = None) -> bool:
    """Whether the storage ``url`` (resolved as by :func:`resolve_storage_url`) may hold studies already.

    False only for an SQLite file that does not exist; servers (PostgreSQL, ...) are assumed to exist.
    Creates nothing, so read-only commands can answer "no such campaign" without creating a store.
    """
    resolved = resolve_storage_url(url, create=False)
    if resolved.startswith("sqlite:///"):
        database = resolved.split(":///", 1)[1]
        return database in ("", ":memory:") or Path(database).exists()
    return True


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
    _refuse_mlflow_database(resolved, engine_kwargs)
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


MLFLOW_TABLES = ("experiments", "registered_models", "alembic_version")
"""Tables of an MLflow backend store: Optuna keeps its own ``alembic_version``, so the two cannot share a database."""


def _refuse_mlflow_database(url: str, engine_kwargs: dict) -> None:
    """:class:`InputError` when ``url`` is an MLflow tracking database (checked before Optuna writes any table)."""
    import sqlalchemy

    from surrogate.errors import InputError

    try:
        engine = sqlalchemy.create_engine(url, **engine_kwargs)
        try:
            tables = set(sqlalchemy.inspect(engine).get_table_names())
        finally:
            engine.dispose()
    except Exception:  # unreachable or bad URL: RDBStorage below reports it
        return
    if all(name in tables for name in MLFLOW_TABLES):
        raise InputError(
            f"storage: {_redact(url)} is an MLflow tracking database (it has MLflow's tables and alembic_version); "
            "Optuna and MLflow each keep their own alembic_version table, so the campaign store needs a database "
            "of its own: create one (e.g. createdb optuna_campaigns) and set SURROGATE_OPTUNA_STORAGE to it "
            "(docs/team.md)"
        )


def fail_stale_trials(study: optuna.Study) -> list[int]:
    """Mark running trials whose worker stopped sending heartbeats as FAIL; returns their numbers."""
    running = {t.number for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    failed = {t.number for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,))}
    return sorted(running & failed)


@dataclass(frozen=True)
class Finish:
    """How to finish one RUNNING trial: its number, final state, value (None for FAIL) and user attributes."""

    number: int
    state: optuna.trial.TrialState
    value: float | None = None
    user_attrs: dict[str, Any] = field(default_factory=dict)


INSERT_CHUNK_ROWS = 2000
"""Rows per INSERT statement of :func:`write_trials` (each statement is one executemany round trip)."""


def write_trials(
    storage: optuna.storages.BaseStorage,
    study_id: int,
    new: Sequence[optuna.trial.FrozenTrial] = (),
    finish: Sequence[Finish] = (),
) -> list[int]:
    """Add the ``new`` trials and finish the RUNNING trials ``finish``: all in one transaction, or nothing.

    Returns the numbers of the new trials, in order. Every trial to finish is re-read inside the transaction;
    one that is no longer RUNNING raises :class:`~surrogate.errors.ConflictError` naming it, and nothing is
    written. In a finished trial the user attributes are written before the state, in the same transaction,
    so no reader ever sees a value without its attributes.

    RDB storages (SQLite, PostgreSQL, MySQL): one database transaction, a handful of statements whatever the
    number of trials (Optuna's own API is one transaction per call). The rows are written with Optuna's
    table models (``optuna.storages._rdb.models``, schema of the pinned Optuna); the study's row is updated
    first so that trial numbers cannot race with another writer. Other storages (in-memory, journal):
    trial by trial through the public API, which is not atomic if it fails midway.
    """
    backend = getattr(storage, "_backend", storage)  # optuna's _CachedStorage wraps an RDBStorage
    if isinstance(backend, optuna.storages.RDBStorage):
        return _write_trials_rdb(backend, study_id, list(new), list(finish))
    return _write_trials_one_by_one(storage, study_id, list(new), list(finish))


def _insert(connection: Any, table: Any, rows: list[dict[str, Any]]) -> None:
    """INSERT ``rows`` into ``table`` in chunks of :data:`INSERT_CHUNK_ROWS` (one executemany each)."""
    import sqlalchemy

    for start in range(0, len(rows), INSERT_CHUNK_ROWS):
        connection.execute(sqlalchemy.insert(table), rows[start : start + INSERT_CHUNK_ROWS])


def _finish_trials(
    connection: Any, study_id: int, finish: list[Finish], now: datetime, value_row: Callable[[int, float], dict]
) -> None:
    """Inside the write transaction: finish pending trials (their attributes, value, then state), or raise
    :class:`~surrogate.errors.ConflictError` when one is missing, already finished, or finished meanwhile."""
    import sqlalchemy
    from optuna.storages._rdb import models

    from surrogate.errors import ConflictError

    running = optuna.trial.TrialState.RUNNING
    trials = models.TrialModel.__table__
    values = models.TrialValueModel.__table__
    user_attrs = models.TrialUserAttributeModel.__table__
    by_number = {f.number: f for f in finish}
    found = connection.execute(
        sqlalchemy.select(trials.c.number, trials.c.trial_id, trials.c.state).where(
            trials.c.study_id == study_id, trials.c.number.in_(list(by_number))
        )
    ).all()
    ids = {number: trial_id for number, trial_id, _ in found}
    for number in by_number:
        if number not in ids:
            raise ConflictError(f"trial {number}: no such trial in the study", trial=number)
    for number, _, state in found:
        if state != running:
            raise ConflictError(f"trial {number}: already {state.name.lower()}, not pending", trial=number)
    keys = sorted({key for f in finish for key in f.user_attrs})
    connection.execute(
        sqlalchemy.delete(user_attrs).where(user_attrs.c.trial_id.in_(list(ids.values())), user_attrs.c.key.in_(keys))
    )
    _insert(
        connection,
        user_attrs,
        [
            {"trial_id": ids[f.number], "key": key, "value_json": json.dumps(value)}
            for f in finish
            for key, value in f.user_attrs.items()
        ],
    )
    _insert(connection, values, [value_row(ids[f.number], f.value) for f in finish if f.value is not None])
    for state in {f.state for f in finish}:  # the state last
        chosen = [ids[f.number] for f in finish if f.state == state]
        done = connection.execute(
            sqlalchemy.update(trials)
            .where(trials.c.trial_id.in_(chosen), trials.c.state == running)
            .values(state=state, datetime_complete=now)
        )
        if done.rowcount != len(chosen):
            raise ConflictError("another writer finished some of these trials at the same time; retry")


def _write_trials_rdb(
    storage: optuna.storages.RDBStorage,
    study_id: int,
    new: list[optuna.trial.FrozenTrial],
    finish: list[Finish],
) -> list[int]:
    import sqlalchemy
    from optuna.distributions import distribution_to_json
    from optuna.storages._rdb import models

    trials = models.TrialModel.__table__
    values = models.TrialValueModel.__table__
    params = models.TrialParamModel.__table__
    user_attrs = models.TrialUserAttributeModel.__table__
    studies = models.StudyModel.__table__
    now = datetime.now(UTC).replace(tzinfo=None)  # Optuna stores naive UTC

    dist_json: dict[int, str] = {}  # the same few distributions serve every trial: serialise each once

    def to_json(dist: Any) -> str:
        if id(dist) not in dist_json:
            dist_json[id(dist)] = distribution_to_json(dist)
        return dist_json[id(dist)]

    def value_row(trial_id: int, value: float) -> dict[str, Any]:
        stored, kind = models.TrialValueModel.value_to_stored_repr(float(value))
        return {"trial_id": trial_id, "objective": 0, "value": stored, "value_type": kind}

    with storage.engine.begin() as connection:
        # Lock the study's row (PostgreSQL row lock, SQLite write lock): Optuna's create_new_trial takes the same
        # lock before numbering a trial, so the numbers below cannot race with another writer.
        connection.execute(
            sqlalchemy.update(studies).where(studies.c.study_id == study_id).values(study_name=studies.c.study_name)
        )
        if finish:
            _finish_trials(connection, study_id, finish, now, value_row)
        if not new:
            return []
        base = connection.execute(
            sqlalchemy.select(sqlalchemy.func.count(trials.c.trial_id)).where(trials.c.study_id == study_id)
        ).scalar_one()
        _insert(
            connection,
            trials,
            [
                {
                    "number": base + i,
                    "study_id": study_id,
                    "state": t.state,
                    "datetime_start": now,
                    "datetime_complete": now if t.state.is_finished() else None,
                }
                for i, t in enumerate(new)
            ],
        )
        ids = dict(
            connection.execute(
                sqlalchemy.select(trials.c.number, trials.c.trial_id).where(
                    trials.c.study_id == study_id, trials.c.number >= base
                )
            ).all()
        )
        if sorted(ids) != list(range(base, base + len(new))):
            raise RuntimeError(
                f"study {study_id}: trial numbers {base}.. were taken by another writer; nothing written"
            )
        _insert(
            connection,
            params,
            [
                {
                    "trial_id": ids[base + i],
                    "param_name": name,
                    "param_value": t.distributions[name].to_internal_repr(value),
                    "distribution_json": to_json(t.distributions[name]),
                }
                for i, t in enumerate(new)
                for name, value in t.params.items()
            ],
        )
        _insert(
            connection, values, [value_row(ids[base + i], t.value) for i, t in enumerate(new) if t.value is not None]
        )
        _insert(
            connection,
            user_attrs,
            [
                {"trial_id": ids[base + i], "key": key, "value_json": json.dumps(value)}
                for i, t in enumerate(new)
                for key, value in t.user_attrs.items()
            ],
        )
        return [base + i for i in range(len(new))]


def _write_trials_one_by_one(
    storage: optuna.storages.BaseStorage,
    study_id: int,
    new: list[optuna.trial.FrozenTrial],
    finish: list[Finish],
) -> list[int]:
    from surrogate.errors import ConflictError

    for f in finish:
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, f.number)
        state = storage.get_trial(trial_id).state
        if state != optuna.trial.TrialState.RUNNING:
            raise ConflictError(f"trial {f.number}: already {state.name.lower()}, not pending", trial=f.number)
    for f in finish:
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, f.number)
        for key, value in f.user_attrs.items():
            storage.set_trial_user_attr(trial_id, key, value)
        storage.set_trial_state_values(trial_id, f.state, None if f.value is None else [float(f.value)])
    return [storage.get_trial_number_from_id(storage.create_new_trial(study_id, template_trial=t)) for t in new]


@dataclass(frozen=True)
class StoredTrial:
    """The parts of a trial :func:`read_trials` returns: number, state, params (external values), user attributes,
    value (the first objective's; None when it has none) and start time (naive, as Optuna stores it)."""

    number: int
    state: optuna.trial.TrialState
    params: dict[str, Any]
    user_attrs: dict[str, Any]
    value: float | None = None
    datetime_start: datetime | None = None


def read_trials(
    storage: optuna.storages.BaseStorage,
    study_id: int,
    states: Sequence[optuna.trial.TrialState],
    attr_keys: Sequence[str] | None,
) -> list[StoredTrial]:
    """The trials of ``study_id`` in ``states``, with their params, value and the user attributes ``attr_keys``
    (``None``: every user attribute), in order of number.

    RDB storages: four plain queries, which reads 10,000 trials about ten times faster than Optuna's
    ``get_trials`` (it loads every relation of every trial through the ORM, and its cached storage reads
    every trial of the study on the first call, whatever states are asked for). Other storages:
    ``get_all_trials``.
    """
    backend = getattr(storage, "_backend", storage)
    if not isinstance(backend, optuna.storages.RDBStorage):
        return [
            StoredTrial(
                t.number,
                t.state,
                dict(t.params),
                {k: v for k, v in t.user_attrs.items() if attr_keys is None or k in attr_keys},
                t.values[0] if t.values else None,
                t.datetime_start,
            )
            for t in storage.get_all_trials(study_id, deepcopy=False, states=tuple(states))
        ]
    import sqlalchemy
    from optuna.distributions import json_to_distribution
    from optuna.storages._rdb import models

    trials = models.TrialModel.__table__
    params = models.TrialParamModel.__table__
    values = models.TrialValueModel.__table__
    user_attrs = models.TrialUserAttributeModel.__table__
    chosen = sqlalchemy.and_(trials.c.study_id == study_id, trials.c.state.in_(list(states)))
    with storage_connection(backend, snapshot=True) as connection:
        rows = connection.execute(
            sqlalchemy.select(trials.c.trial_id, trials.c.number, trials.c.state, trials.c.datetime_start).where(chosen)
        ).all()
        value_of = {
            trial_id: models.TrialValueModel.stored_repr_to_value(value, kind)
            for trial_id, value, kind in connection.execute(
                sqlalchemy.select(values.c.trial_id, values.c.value, values.c.value_type)
                .join(trials, trials.c.trial_id == values.c.trial_id)
                .where(chosen, values.c.objective == 0)
            )
        }
        found = {
            trial_id: StoredTrial(number, state, {}, {}, value_of.get(trial_id), start)
            for trial_id, number, state, start in rows
        }
        distributions: dict[str, Any] = {}
        for trial_id, name, value, dist_json in connection.execute(
            sqlalchemy.select(params.c.trial_id, params.c.param_name, params.c.param_value, params.c.distribution_json)
            .join(trials, trials.c.trial_id == params.c.trial_id)
            .where(chosen)
        ):
            if dist_json not in distributions:
                distributions[dist_json] = json_to_distribution(dist_json)
            if trial_id in found:  # not a trial added since the first query
                found[trial_id].params[name] = distributions[dist_json].to_external_repr(value)
        if attr_keys is None or attr_keys:
            query = (
                sqlalchemy.select(user_attrs.c.trial_id, user_attrs.c.key, user_attrs.c.value_json)
                .join(trials, trials.c.trial_id == user_attrs.c.trial_id)
                .where(chosen)
            )
            if attr_keys is not None:
                query = query.where(user_attrs.c.key.in_(list(attr_keys)))
            for trial_id, key, value_json in connection.execute(query):
                if trial_id in found:
                    found[trial_id].user_attrs[key] = json.loads(value_json)
    return sorted(found.values(), key=lambda t: t.number)


def count_trials(storage: optuna.storages.BaseStorage, study_names: Sequence[str]) -> dict[str, int]:
    """The number of trials of each study of ``study_names`` (by name), without reading any trial.

    RDB storages: one ``COUNT`` query grouped by study. Other storages (in-memory, journal: their trials are
    in memory already): the length of ``get_all_trials``.
    """
    if not study_names:
        return {}
    backend = getattr(storage, "_backend", storage)
    if not isinstance(backend, optuna.storages.RDBStorage):
        return {
            name: len(storage.get_all_trials(storage.get_study_id_from_name(name), deepcopy=False))
            for name in study_names
        }
    import sqlalchemy
    from optuna.storages._rdb import models

    trials = models.TrialModel.__table__
    studies = models.StudyModel.__table__
    query = (
        sqlalchemy.select(studies.c.study_name, sqlalchemy.func.count(trials.c.trial_id))
        .select_from(studies.outerjoin(trials, trials.c.study_id == studies.c.study_id))
        .where(studies.c.study_name.in_(list(study_names)))
        .group_by(studies.c.study_name)
    )
    with storage_connection(backend) as connection:
        return {name: int(n) for name, n in connection.execute(query)}


@contextmanager
def storage_connection(storage: optuna.storages.RDBStorage, snapshot: bool = False) -> Iterator[Any]:
    """A connection of the storage's engine for reading (closed at the end of the block).

    ``snapshot``: on PostgreSQL every query of the block sees the same snapshot (REPEATABLE READ). SQLite runs
    each query on its own snapshot: readers such as :func:`read_trials` skip rows of trials added in between.
    """
    with storage.engine.connect() as connection:
        if snapshot and storage.engine.dialect.name == "postgresql":
            connection = connection.execution_options(isolation_level="REPEATABLE READ")
        yield connection


LOCK_WAIT_S = 300.0
"""Seconds :func:`exclusive` waits for a lock by default before it raises :class:`~surrogate.errors.BusyError`
(the CLI and the library; the service waits less, ``serving.service.CAMPAIGN_LOCK_WAIT_S``)."""
LOCK_RETRY_AFTER_S = 5
"""Seconds a caller that got :class:`~surrogate.errors.BusyError` is told to wait (HTTP ``Retry-After``)."""
LOCK_POOL_SIZE = 2
LOCK_POOL_OVERFLOW = 8
"""Connections of the engine that holds PostgreSQL advisory locks (per storage URL and process): one per lock
held at the same time; a waiter holds none."""
_POLL_FIRST_S = 0.02
_POLL_MAX_S = 0.25

_PROCESS_LOCKS: dict[str, threading.Lock] = {}
_PROCESS_LOCKS_GUARD = threading.Lock()
_LOCK_ENGINES: dict[str, Any] = {}


def _lock_engine(url: str) -> Any:
    """The process's engine for advisory locks on ``url``: its own small pool, autocommit (no open transaction)."""
    import sqlalchemy

    with _PROCESS_LOCKS_GUARD:
        engine = _LOCK_ENGINES.get(url)
        if engine is None:
            engine = sqlalchemy.create_engine(
                database_url(url),
                pool_size=LOCK_POOL_SIZE,
                max_overflow=LOCK_POOL_OVERFLOW,
                pool_timeout=_POLL_MAX_S,
                pool_pre_ping=True,
                isolation_level="AUTOCOMMIT",
            )
            _LOCK_ENGINES[url] = engine
        return engine


def _busy(what: str, wait_s: float) -> Exception:
    from surrogate.errors import BusyError

    return BusyError(
        f"{what} is busy: another call (a suggestion being computed, or a large observe) has held it for more "
        f"than {wait_s:g} s; nothing was done: retry in a few seconds",
        retry_after_s=LOCK_RETRY_AFTER_S,
    )


def _polling(try_once: Any, what: str, wait_s: float) -> Any:
    """Call ``try_once()`` until it returns something other than None, sleeping in between (backing off, with
    jitter), for up to ``wait_s`` seconds; :class:`~surrogate.errors.BusyError` after that."""
    import random

    deadline = time.monotonic() + wait_s
    pause = _POLL_FIRST_S
    while True:
        got = try_once()
        if got is not None:
            return got
        left = deadline - time.monotonic()
        if left <= 0:
            raise _busy(what, wait_s)
        time.sleep(min(left, pause * random.uniform(0.5, 1.0)))
        pause = min(pause * 2, _POLL_MAX_S)


@contextmanager
def _advisory_lock(url: str, number: int, what: str, wait_s: float) -> Iterator[None]:
    """Hold PostgreSQL's session advisory lock ``number`` on a connection of :func:`_lock_engine`."""
    import sqlalchemy

    engine = _lock_engine(url)

    def try_once() -> Any:
        try:
            connection = engine.connect()
        except sqlalchemy.exc.TimeoutError:  # every lock connection is holding a lock: wait as for the lock
            return None
        try:
            if connection.execute(sqlalchemy.text("SELECT pg_try_advisory_lock(:k)"), {"k": number}).scalar():
                return connection
        except BaseException:
            connection.close()
            raise
        connection.close()  # not ours yet: the connection goes back to the pool while we wait
        return None

    connection = _polling(try_once, what, wait_s)
    try:
        yield
    finally:
        try:
            connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": number})
        except BaseException:
            connection.invalidate()  # closing the session releases the lock; it never returns to the pool
            raise
        finally:
            connection.close()


@contextmanager
def exclusive(
    storage: optuna.storages.BaseStorage, key: str, wait_s: float | None = None, what: str | None = None
) -> Iterator[None]:
    """Hold a lock named ``key`` across every process (and host) using ``storage`` while the block runs.

    Waits up to ``wait_s`` seconds (default :data:`LOCK_WAIT_S`), then raises
    :class:`~surrogate.errors.BusyError` naming ``what`` (default: the key). PostgreSQL: a session advisory
    lock on a 64-bit hash of ``key``, taken with ``pg_try_advisory_lock`` on a connection of a small engine of
    its own (:func:`_lock_engine`), so it works across hosts; a waiter polls and holds no connection, and the
    storage's own pool is never used for locks. SQLite files: an exclusive ``flock`` on
    ``<database>.<hash>.lock`` next to the database (processes of one host, which is all SQLite serves).
    Other storages (in-memory, MySQL, ...): a lock within this process only.
    """
    wait = LOCK_WAIT_S if wait_s is None else float(wait_s)
    what = what or f"lock {key!r}"
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    url = storage.url if isinstance(storage, optuna.storages.RDBStorage) else ""
    if url.startswith("postgresql"):
        with _advisory_lock(url, int.from_bytes(digest[:8], "big", signed=True), what, wait):
            yield
        return
    database = url.split(":///", 1)[1] if url.startswith("sqlite:///") else ""
    if database and database != ":memory:":
        import fcntl

        with open(f"{database}.{digest[:6].hex()}.lock", "a+b") as handle:

            def try_once() -> bool | None:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return None
                return True

            _polling(try_once, what, wait)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    with _PROCESS_LOCKS_GUARD:
        lock = _PROCESS_LOCKS.setdefault(key, threading.Lock())
    if not lock.acquire(timeout=wait):
        raise _busy(what, wait)
    try:
        yield
    finally:
        lock.release()


def _redact(url: str) -> str:
    """The URL without a password, for messages."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        user = credentials.split(":", 1)[0]
        return f"{scheme}://{user}@{host}"
    return url


LOCAL_POSTGRES_URLS: tuple[str, ...] = (
    "postgresql://postgres@127.0.0.1:5432/test",
    "postgresql://root@127.0.0.1:5432/test",
)
"""Where the test suite and the benchmarks look for a shared PostgreSQL database (trust auth, database ``test``)."""


def reachable_postgres_url(candidates: tuple[str, ...] = LOCAL_POSTGRES_URLS) -> str | None:
    """The first of ``candidates`` that accepts a connection within 3 s, or None when none does."""
    import sqlalchemy

    for url in candidates:
        try:
            engine = sqlalchemy.create_engine(database_url(url), connect_args={"connect_timeout": 3})
            with engine.connect():
                pass
            engine.dispose()
            return url
        except Exception:  # any failure to connect means: not this one
            continue
    return None
