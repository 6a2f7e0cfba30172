"""``surrogate dashboard``: the campaign pages and optuna-dashboard on the campaign storage, in a browser.

``/campaigns`` (and ``/``) is the project's own campaign view (:mod:`surrogate.campaign_page`): the objective with
its unit, the recommended design with its 90% interval, the warm start and the pending suggestions. optuna-dashboard
answers every other path (``/dashboard``: the raw trials of campaigns and searches).

The storage is the one every campaign command uses (``--storage``, else ``$SURROGATE_OPTUNA_STORAGE``, else the
local ``.surrogate/optuna.db``; see :mod:`surrogate.storage`). The command only reads an existing store: when
there is none it says so and exits 2, and creates nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from surrogate.errors import InputError

DEFAULT_PORT = 8080
DEFAULT_HOST = "127.0.0.1"
_CREATE_HINT = "create a campaign first (surrogate campaign create NAME --objective K)"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``dashboard`` command."""
    dashboard = subparsers.add_parser(
        "dashboard",
        help="the campaigns in a browser: recommended design, intervals, pending suggestions; and optuna-dashboard",
        description=(
            "Serve the campaign pages (/campaigns: objective and unit, recommended design with its 90% interval, "
            "warm start, pending suggestions) and optuna-dashboard (/dashboard: the raw trials) on the Optuna "
            "storage of campaigns and searches (read from an existing store; nothing is created). Stop it with Ctrl-C."
        ),
    )
    dashboard.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})")
    dashboard.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port to listen on (default {DEFAULT_PORT})")
    dashboard.add_argument(
        "--storage", default=None, help="Optuna storage URL (default: $SURROGATE_OPTUNA_STORAGE or local SQLite)"
    )
    dashboard.set_defaults(func=_dashboard)


def existing_storage_url(url: str | None) -> str:
    """The campaign storage URL, checked to hold an Optuna store already; :class:`InputError` when it does not.

    Never creates anything: a SQLite file must exist (SQLAlchemy would create an empty one on connect), and
    any database must already have Optuna's tables.
    """
    from surrogate import storage
    from surrogate.settings import get_settings

    given = (url or "").strip() or get_settings().optuna_storage or ""
    if not given:  # the local default; resolve_storage_url would create its folder
        path = storage.surrogate_home() / storage.DEFAULT_FILENAME
        if not path.is_file():
            raise InputError(f"no campaign store at {path}: {_CREATE_HINT}")
        given = f"sqlite:///{path.resolve()}"
    resolved = storage.resolve_storage_url(given)
    if resolved.startswith("sqlite:///"):
        path = Path(resolved.removeprefix("sqlite:///"))
        if not path.is_file():
            raise InputError(f"--storage: no campaign store at {path}: {_CREATE_HINT}")
    if "://" not in resolved:
        raise InputError(f"--storage: {resolved!r} is not a database URL (e.g. sqlite:///optuna.db)")
    _require_optuna_tables(storage.database_url(resolved))
    return resolved


def _require_optuna_tables(url: str) -> None:
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(url)
    except Exception as exc:
        raise InputError(f"--storage: cannot open {url.split('@')[-1]} ({type(exc).__name__}: {exc})") from None
    try:
        has_studies = sqlalchemy.inspect(engine).has_table("studies")
    except Exception as exc:
        raise InputError(f"--storage: cannot open {url.split('@')[-1]} ({type(exc).__name__}: {exc})") from None
    finally:
        engine.dispose()
    if not has_studies:
        raise InputError(f"--storage: {url.split('@')[-1]} holds no Optuna studies: {_CREATE_HINT}")


def _dashboard(args: argparse.Namespace) -> int:
    if not 1 <= args.port <= 65535:
        raise InputError(f"--port: {args.port} is not a TCP port (1-65535)")
    url = existing_storage_url(args.storage)
    from werkzeug.serving import run_simple

    print(
        f"campaigns on http://{args.host}:{args.port}/campaigns, optuna-dashboard on "
        f"http://{args.host}:{args.port}/dashboard (storage {url.split('@')[-1]}); Ctrl-C stops it",
        file=sys.stderr,
    )
    sys.stderr.flush()
    run_simple(args.host, args.port, dashboard_app(url), threaded=True)
    return 0


def dashboard_app(url: str) -> Any:
    """The WSGI application of ``surrogate dashboard``: the campaign pages, and optuna-dashboard for every other path."""
    from optuna_dashboard import wsgi

    from surrogate.campaign_page import CampaignPages
    from surrogate.storage import get_storage

    store = get_storage(url, heartbeat_interval=None)
    pages = CampaignPages(store)
    optuna_app = wsgi(store)

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        if path in ("", "/", "/campaigns") or path.startswith("/campaigns/"):
            return pages(environ, start_response)
        return optuna_app(environ, start_response)

    return app
