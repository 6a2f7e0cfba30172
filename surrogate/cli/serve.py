"""``surrogate serve``: run the HTTP service (``bentoml serve serving.service:Surrogate``), or build a Bento.

The service answers with the registry champion (``models:/llto-surrogate@champion``) unless ``--model``
names another MLflow model URI. ``--build`` imports that model into the BentoML model store and runs
``bentoml build`` so that the Bento carries the model and needs no MLflow store at serving time.
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


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``serve`` command."""
    serve = subparsers.add_parser(
        "serve",
        help="serve predictions, campaigns and search over HTTP (BentoML), or build a self-contained Bento",
        description=(
            "Start the HTTP service: POST /predict, /model_info, /suggest, /observe, /search; GET /healthz, "
            "/readyz, /metrics, /docs.json. Environment: SURROGATE_API_TOKEN (bearer token required on /suggest, "
            "/observe, /search), SURROGATE_MAX_BODY_BYTES (request body limit, default 16 MiB), "
            "SURROGATE_OPTUNA_STORAGE (campaign storage), MLFLOW_TRACKING_URI (model registry)."
        ),
    )
    serve.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port to listen on (default {DEFAULT_PORT})")
    serve.add_argument(
        "--model", default=None, help="MLflow model URI to serve (default models:/llto-surrogate@champion)"
    )
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1; 2 on 2 cores)")
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
    if args.workers < 1:
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

    env = dict(os.environ, **{WORKERS_ENV: str(args.workers)})
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


def _build(args: argparse.Namespace) -> int:
    from serving.service import BENTO_MODEL_ENV

    model = import_model(args.model)
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ)
    env.pop(BENTO_MODEL_ENV, None)
    env.setdefault("BENTOML_DO_NOT_TRACK", "true")
    command = [*_bentoml(), "build", str(root), "-f", str(root / "serving" / "bentofile.yaml"), "-o", "tag"]
    command += ["--arg", f"bento_model={model.tag}"]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        print(done.stderr or done.stdout, file=sys.stderr)
        return EXIT_INTERNAL
    tag = done.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    if args.json:
        print_json({"bento": tag, "model": str(model.tag)})
    else:
        print(f"built Bento {tag} with model {model.tag}; serve it with: bentoml serve {tag}")
    return EXIT_OK
