"""``surrogate serve``: run the HTTP service (``bentoml serve serving.service:Surrogate``), or build a Bento.

The service answers with the registry champion (``models:/llto-surrogate@champion``) unless ``--model``
names another MLflow model URI. ``--build`` imports that model into the BentoML model store and runs
``bentoml build`` (on a copy of the installed packages, :func:`build_context`) so that the Bento carries the model
and needs no MLflow store at serving time.

Process hygiene: ``surrogate serve`` becomes the BentoML server (``exec``), so signals reach it; each worker asks
Linux to stop it when the server dies (``serving.service.die_with_parent``), so a ``kill -9`` of the server
leaves no worker holding the port.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from surrogate.cli import EXIT_INTERNAL, EXIT_OK, add_json_flag, print_json
from surrogate.errors import InputError

SERVICE = "serving.service:Surrogate"
DEFAULT_PORT = 3000
DEFAULT_HOST = "127.0.0.1"
BENTOFILE = "bentofile.yaml"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``serve`` command."""
    serve = subparsers.add_parser(
        "serve",
        help="serve predictions, campaigns and search over HTTP (BentoML), or build a self-contained Bento",
        description=(
            "Start the HTTP service: POST /predict, /search, /suggest, /observe, /campaigns; GET and POST "
            "/model_info; GET /campaigns, /campaigns/NAME, /healthz, /readyz (503 until a model is loaded), "
            "/metrics; Swagger UI at /, OpenAPI at /docs.json (see docs/service.md). Settings (environment or "
            "surrogate.toml; `surrogate config` shows them): SURROGATE_API_TOKEN (bearer token required on the "
            "campaign and search endpoints), SURROGATE_MAX_BODY_BYTES (request body limit, default 16 MiB), "
            "SURROGATE_OPTUNA_STORAGE (campaign storage), MLFLOW_TRACKING_URI (model registry), "
            "SURROGATE_CHAMPION_POLL_S (seconds between checks for a new @champion)."
        ),
    )
    serve.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port to listen on (default {DEFAULT_PORT})")
    serve.add_argument(
        "--model", default=None, help="MLflow model URI to serve (default models:/llto-surrogate@champion)"
    )
    serve.add_argument(
        "--workers", type=int, default=None, help="worker processes (default: the workers setting, 1; 2 on 2 cores)"
    )
    serve.add_argument(
        "--build",
        action="store_true",
        help="import the model into the BentoML store and build a Bento (serving/bentofile.yaml) instead of serving",
    )
    add_json_flag(serve)
    serve.set_defaults(func=_serve)


def _check(args: argparse.Namespace) -> None:
    if not 1 <= args.port <= 65535:
        raise InputError(f"--port: {args.port} is not a TCP port (1-65535)")
    if args.workers is not None and args.workers < 1:
        raise InputError(f"--workers: {args.workers} must be at least 1")
    if args.model is not None and not args.model.strip():
        raise InputError("--model: give an MLflow model URI, e.g. models:/llto-surrogate/3")


def _bentoml() -> list[str]:
    return [sys.executable, "-m", "bentoml"]


def _serve(args: argparse.Namespace) -> int:
    _check(args)
    if args.build:
        return _build(args)
    from serving.service import MODEL_URI_ENV, WORKERS_ENV

    env = dict(os.environ)
    if args.workers is not None:  # the flag wins over SURROGATE_WORKERS and the settings file
        env[WORKERS_ENV] = str(args.workers)
    env.setdefault("BENTOML_DO_NOT_TRACK", "true")
    if args.model:
        env[MODEL_URI_ENV] = args.model
    command = [*_bentoml(), "serve", SERVICE, "--host", args.host, "--port", str(args.port)]
    print(f"serving on http://{args.host}:{args.port} (Swagger UI at /, OpenAPI at /docs.json)", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    # Become the server (exec, not a child): a signal sent to `surrogate serve` (Ctrl-C, SIGTERM from a
    # supervisor) then reaches BentoML, which stops its workers; a child would be orphaned instead.
    os.execve(sys.executable, command, env)
    return EXIT_INTERNAL  # not reached


def import_model(model_uri: str | None = None) -> Any:
    """Import the champion (or ``model_uri``) into the BentoML model store; returns the ``bentoml.Model``."""
    import bentoml

    from serving.service import BENTO_MODEL_NAME
    from surrogate import tracking

    tracking.configure_mlflow()
    tracking.load_pyfunc(model_uri)  # an InputError ("run surrogate train") before anything is written
    info = tracking.champion_info() if model_uri is None else {"name": model_uri, "model_uri": model_uri}
    return bentoml.mlflow.import_model(
        BENTO_MODEL_NAME,
        model_uri or tracking.CHAMPION_URI,
        metadata={"champion": json.dumps(info, default=str)},
    )


def build_context(target: Path) -> Path:
    """A BentoML build context in ``target`` made from the *installed* packages: works from a wheel as from a checkout.

    Copies the ``surrogate`` and ``serving`` packages (wherever Python imports them from, without caches) and
    ``serving/bentofile.yaml`` into ``target``; returns the bentofile's path there. Raises :class:`InputError`
    when the installed ``serving`` package lacks its ``bentofile.yaml``.
    """
    import importlib.util
    import shutil

    for package in ("surrogate", "serving"):
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise InputError(f"--build: the {package!r} package is not installed")
        source = Path(next(iter(spec.submodule_search_locations)))
        shutil.copytree(source, target / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    bentofile = target / "serving" / BENTOFILE
    if not bentofile.is_file():
        raise InputError(f"--build: {BENTOFILE} is missing from the installed 'serving' package; reinstall the project")
    return bentofile


def _build(args: argparse.Namespace) -> int:
    import tempfile

    from serving.service import BENTO_MODEL_ENV

    model = import_model(args.model)
    env = dict(os.environ)
    env.pop(BENTO_MODEL_ENV, None)
    env.setdefault("BENTOML_DO_NOT_TRACK", "true")
    with tempfile.TemporaryDirectory(prefix="surrogate-bento-") as folder:
        context = Path(folder)
        bentofile = build_context(context)
        command = [*_bentoml(), "build", str(context), "-f", str(bentofile), "-o", "tag"]
        command += ["--arg", f"bento_model={model.tag}"]
        done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=context)
    if done.returncode != 0:
        print(done.stderr or done.stdout, file=sys.stderr)
        return EXIT_INTERNAL
    tag = done.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    if args.json:
        print_json({"bento": tag, "model": str(model.tag)})
    else:
        print(f"built Bento {tag} with model {model.tag}; serve it with: bentoml serve {tag}")
    return EXIT_OK
