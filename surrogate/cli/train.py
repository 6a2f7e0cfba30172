"""``surrogate train``, ``tune``, ``predict``, ``facts`` and ``ui``: train and track surrogates, ask the champion."""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import Any

from surrogate.cli import EXIT_BAD_INPUT, EXIT_OK, add_json_flag, print_json
from surrogate.design import (
    ANNEAL_TEMP_C,
    BUFFER,
    BUFFERS,
    C_RATE,
    CYCLES,
    DEFAULT_C_RATE,
    DEFAULT_CYCLES,
    DEFAULT_PROTOCOL,
    MATERIAL,
    PROTOCOL,
    PROTOCOLS,
    TARGET_UNITS,
    TEST_TEMP_C,
)
from surrogate.errors import InputError
from surrogate.materials import DEFAULT_MATERIAL, DEFAULT_MATERIALS, add_materials_argument
from surrogate.targets import PAPER_TARGETS, target_names

_FAMILIES_HELP = "physics, gp, trees, torch"
EXIT_TERMINATED = 128 + 15
"""Exit code after SIGTERM (the shell's convention: 128 + signal number)."""
_NOT_MEASURED = (
    "These are model predictions, not measurements. A design marked EXTRAPOLATION lies outside the data the model "
    "was trained on: treat its numbers as a guess."
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train``, ``tune``, ``predict``, ``facts`` and ``ui``."""
    train = subparsers.add_parser(
        "train",
        help="train surrogates with grouped cross-validation, track them in MLflow, register the champion",
        description=(
            "Cross-validate every model family per target (leave one anneal state / test temperature / buffer "
            "curve out), pick the champion per target, refit it on all data, log everything to MLflow "
            "(metrics, plots, data set, activation energies) and register the champion as 'llto-surrogate' "
            "with alias 'champion'. Without --data the embedded data set is used: a reconstruction of the "
            "paper, not measurements."
        ),
    )
    train.add_argument("--data", type=Path, default=None, metavar="FILE", help="measurements (.csv or .parquet)")
    train.add_argument("--experiment", default=None, help="MLflow experiment name (default llto-surrogate)")
    train.add_argument(
        "--models",
        default=None,
        metavar="LIST",
        help=f"comma-separated families to try (default all: {_FAMILIES_HELP})",
    )
    train.add_argument("--tune", type=int, default=0, metavar="N", help="Optuna trials per family and target first")
    train.add_argument("--level", type=float, default=0.9, help="central interval level (default 0.9)")
    train.add_argument(
        "--missing-targets",
        choices=("refuse", "keep", "drop"),
        default="refuse",
        help=(
            "when the registered champion has a model for a target that FILE has too few rows of: refuse (exit 2, "
            "nothing written; the default), keep (the new version keeps the earlier champion's model of that "
            "target, and says so), drop (the new champion has no model for it)"
        ),
    )
    train.add_argument(
        "--promote",
        action="store_true",
        help=(
            "make the new version @champion even when its data is much smaller than the champion's or lacks "
            "buffers the champion covers (without it such a version is registered, and the champion stays)"
        ),
    )
    add_json_flag(train)
    add_materials_argument(train)
    train.set_defaults(func=_train)

    tune = subparsers.add_parser(
        "tune",
        help="tune model families' hyper-parameters with Optuna (each trial a nested MLflow run)",
        description=(
            "Tune the hyper-parameters of model families on the grouped cross-validation score (RMSE in the "
            "target's modelling space: log10 σ, logit retention). Each trial is a nested MLflow run under one "
            "parent run; the best parameters are logged there. Nothing is registered: use `surrogate train "
            "--tune N` to train with tuned parameters."
        ),
    )
    tune.add_argument("--trials", type=int, default=20, metavar="N", help="trials per family and target (default 20)")
    tune.add_argument("--family", default=None, help=f"one family ({_FAMILIES_HELP}); default all")
    tune.add_argument("--target", default=None, help=f"one declared target ({', '.join(target_names())}); default all")
    tune.add_argument("--data", type=Path, default=None, metavar="FILE", help="measurements (.csv or .parquet)")
    tune.add_argument("--experiment", default=None, help="MLflow experiment name (default llto-surrogate)")
    tune.add_argument("--seed", type=int, default=0, help="sampler seed (default 0)")
    tune.add_argument(
        "--backend",
        choices=("loky", "dask"),
        default="loky",
        help="joblib backend of the (family, target) studies: loky (local processes, default) or dask (a cluster)",
    )
    tune.add_argument(
        "--address", default=None, metavar="URL", help="Dask scheduler, tcp://host:8786 (with --backend dask)"
    )
    tune.add_argument(
        "--n-jobs", type=int, default=1, metavar="N", help="local processes or local Dask workers (default 1)"
    )
    add_json_flag(tune)
    add_materials_argument(tune)
    tune.set_defaults(func=_tune)

    predict = subparsers.add_parser(
        "predict",
        help="predict the three targets of a design with the registered champion (mean and interval)",
        description=(
            "Ask the registered champion (or --model URI) for one design: mean and central interval of "
            "conductivity_s_cm (S/cm), rate_retention and capacity_retention (fractions), and whether the design "
            "is an extrapolation beyond the training data. " + _NOT_MEASURED
        ),
    )
    predict.add_argument("--buffer", required=True, help=f"buffer layer: {', '.join(BUFFERS)} (aliases accepted)")
    predict.add_argument(
        "--anneal-temp-c", type=float, required=True, help="anneal temperature, °C (25 = as-deposited)"
    )
    predict.add_argument("--test-temp-c", type=float, required=True, help="measurement / operating temperature, °C")
    predict.add_argument("--c-rate", type=float, default=DEFAULT_C_RATE, help="C-rate for rate_retention (default 30)")
    predict.add_argument(
        "--cycles", type=int, default=DEFAULT_CYCLES, help="cycle count for capacity_retention (default 100)"
    )
    predict.add_argument(
        "--protocol", default=DEFAULT_PROTOCOL, choices=PROTOCOLS, help="cycling protocol (default standard)"
    )
    predict.add_argument(
        "--material",
        default=None,
        help=f"what is measured: {', '.join(DEFAULT_MATERIALS)} or a declared material (default {DEFAULT_MATERIAL}, "
        "the paper's sputtered film)",
    )
    predict.add_argument("--model", default=None, metavar="URI", help="MLflow model URI (default the champion)")
    predict.add_argument("--level", type=float, default=0.9, help="central interval level (default 0.9)")
    add_json_flag(predict)
    add_materials_argument(predict)
    predict.set_defaults(func=_predict)

    facts = subparsers.add_parser(
        "facts",
        help="check the paper's facts against the registered champion (or --model URI)",
        description=(
            "Evaluate every checkable fact of the paper with the trained model's predicted means instead of the "
            "virtual lab (same tolerances as `surrogate lab facts`). Facts about the lab's internal physics "
            "(e.g. crystal structure) are skipped. A fact that does not hold is a FAIL row of the report, not an "
            "error: exit 0 once the report is printed (2 for bad input, 1 only for an internal failure)."
        ),
    )
    facts.add_argument("--model", default=None, metavar="URI", help="MLflow model URI (default the champion)")
    add_json_flag(facts)
    add_materials_argument(facts)
    facts.set_defaults(func=_facts)

    ui = subparsers.add_parser(
        "ui",
        help="start the MLflow UI on the project's tracking store",
        description="Run `mlflow ui` on the project's tracking store (sqlite:///mlruns/mlflow.db unless "
        "MLFLOW_TRACKING_URI says otherwise), artifacts under ./mlruns. Stop it with Ctrl-C.",
    )
    ui.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    ui.add_argument("--port", type=int, default=5000, help="port (default 5000)")
    ui.set_defaults(func=_ui)


# --------------------------------------------------------------------- train
def _families(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise InputError(f"--models: give a comma-separated list of families ({_FAMILIES_HELP})")
    return names


def _bad_data(path: Path, as_json: bool) -> int | None:
    """Print the `surrogate data validate` report and return exit 2 when ``path`` is not a valid table."""
    from surrogate.cli.data import print_validation
    from surrogate.schema import validation_report

    if validation_report(path)["ok"]:
        return None
    return print_validation(path, as_json)


def _train(args: argparse.Namespace) -> int:
    if args.data is not None:
        code = _bad_data(args.data, args.json)
        if code is not None:
            return code
    if args.tune < 0:
        raise InputError("--tune: the number of trials must be 0 or more")
    from surrogate.tracking import DEFAULT_EXPERIMENT
    from training.train import Terminated, train

    try:
        result = train(
            args.data,
            experiment=args.experiment or DEFAULT_EXPERIMENT,
            families=_families(args.models),
            tune_trials=args.tune,
            level=args.level,
            progress=not args.json,
            missing_targets=args.missing_targets,
            promote=args.promote,
        )
    except Terminated:
        print(
            "surrogate train: terminated (SIGTERM); the MLflow run is marked KILLED, nothing registered",
            file=sys.stderr,
        )
        return EXIT_TERMINATED
    document = result.to_dict()
    if args.json:
        print_json(document)
    else:
        print(format_train_report(document))
    return EXIT_OK


def _score(value: Any) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3g}"


def format_train_report(document: dict[str, Any]) -> str:
    """The human-readable summary of :meth:`training.train.TrainResult.to_dict`."""
    data = document["data"]
    lines = [f"data: {data['source']} ({data['rows']} rows, sha256 {data['hash'][:16]})"]
    if data["reconstruction"]:
        lines.append("      (a reconstruction from Tan et al. 2021 by the virtual lab, not measurements)")
    level = document["level"]
    lines.append(f"\nGrouped cross-validation ({level:.0%} intervals; RMSE/MAE/R² in the modelling space):")
    if document.get("selection_rule"):
        lines.append(f"champion rule: {document['selection_rule']}")
    for target, entry in document["targets"].items():
        lines += _target_lines(target, entry)
    lines += _activation_energy_lines(document["activation_energies"])
    if document.get("kept"):
        lines.append("\nKept from the earlier champion (this data has too few rows of them):")
        lines += [f"  {target}: the model of {origin}" for target, origin in document["kept"].items()]
    for target, warning in (document.get("coverage_warnings") or {}).items():
        lines.append(f"\nWARNING ({target}): {warning}")
    if document.get("tuned_params"):
        lines.append("\nTuned hyper-parameters (Optuna, best CV RMSE):")
        lines += [f"  {key}: {params}" for key, params in document["tuned_params"].items()]
    lines.append(f"\ntrain time: {document['train_time_s']:.1f} s")
    lines += _registration_lines(document)
    return "\n".join(lines)


def _target_lines(target: str, entry: dict[str, Any]) -> list[str]:
    """One target's block of the report: every family's CV scores, the champion and why."""
    lines = [f"\n{target} [{entry['space']}], CV: {entry['cv_scheme']}"]
    lines.append(f"  {'family':10s} {'RMSE':>8s} {'MAE':>8s} {'R²':>8s} {'coverage':>9s}")
    for family, scores in entry["families"].items():
        mark = "  <- champion" if family == entry["champion"] else ""
        lines.append(
            f"  {family:10s} {_score(scores.get('rmse')):>8s} {_score(scores.get('mae')):>8s} "
            f"{_score(scores.get('r2')):>8s} {_score(scores.get('coverage')):>9s}{mark}"
        )
    lines += [f"  {family:10s} skipped: {reason}" for family, reason in entry["skipped"].items()]
    if entry.get("champion_reason"):
        lines.append(f"  champion {entry['champion']}: {entry['champion_reason']}")
    if entry.get("sample_variance"):
        variance = entry["sample_variance"]
        lines.append(f"  fresh-sample spread {variance['between_variance'] ** 0.5:.3g} ({variance['source']})")
    if entry["champion"] is None:
        lines.append("  no champion: no family could be trained for this target")
    return lines


def _activation_energy_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The Arrhenius fits per anneal state (eV), σ·T form and σ form where fitted."""
    if not rows:
        return []
    lines = ["\nActivation energy per anneal state (physics baseline; σ·T form, and σ form where fitted):"]
    for row in rows:
        state = "as-deposited" if row[ANNEAL_TEMP_C] <= 25.0 else f"annealed {row[ANNEAL_TEMP_C]:g} °C"
        sigma_form = (
            f"; σ form {row['ea_sigma_ev']:.3f} ± {row['ea_sigma_se_ev']:.3f} eV"
            if row.get("ea_sigma_ev") is not None and row.get("ea_sigma_se_ev") is not None
            else ""
        )
        lines.append(f"  {state:18s} Ea = {row['ea_ev']:.3f} ± {row['ea_se_ev']:.3f} eV (σ·T form){sigma_form}")
    return lines


def _registration_lines(document: dict[str, Any]) -> list[str]:
    """Which version was registered, whether it became the champion, the MLflow run and where to see it."""
    model = document["registered_model"]
    if model.get("promoted", True):
        lines = [f"registered: {model['name']} version {model['version']} (alias {model['alias']})"]
    else:
        lines = [f"registered: {model['name']} version {model['version']}, not the champion"]
    if model.get("promotion"):
        lines.append(f"champion: {model['promotion']}")
    lines.append(
        f"MLflow run: {document['run_id']} in experiment {document['experiment']!r} ({document['tracking_uri']})"
    )
    from surrogate.tracking import LOCAL_UI, experiment_url, ui_base

    if document.get("experiment_id") and ui_base() != LOCAL_UI:  # an MLflow server: its own UI
        lines.append(f"MLflow UI: {experiment_url(ui_base(), document['experiment_id'], document['run_id'])}")
    elif document.get("experiment_id"):
        url = experiment_url(LOCAL_UI, document["experiment_id"], document["run_id"])
        lines.append(f"open the UI with: surrogate ui   (then {url})")
    else:
        lines.append("open the UI with: surrogate ui")
    return lines


# ---------------------------------------------------------------------- tune
def _tune(args: argparse.Namespace) -> int:
    if args.data is not None:
        code = _bad_data(args.data, args.json)
        if code is not None:
            return code
    from surrogate.tracking import DEFAULT_EXPERIMENT
    from training.tune import tune

    result = tune(
        args.data,
        experiment=args.experiment or DEFAULT_EXPERIMENT,
        families=None if args.family is None else [args.family],
        targets=None if args.target is None else [args.target],
        n_trials=args.trials,
        seed=args.seed,
        progress=not args.json,
        backend=args.backend,
        address=args.address,
        n_jobs=args.n_jobs,
    )
    document = result.to_dict()
    if args.json:
        print_json(document)
        return EXIT_OK
    print(f"Optuna tuning, {document['n_trials']} trial(s) per family and target (CV RMSE, modelling space):")
    for entry in document["studies"]:
        if entry["skipped"]:
            print(f"  {entry['target']:20s} {entry['family']:8s} skipped: {entry['skipped']}")
        else:
            print(
                f"  {entry['target']:20s} {entry['family']:8s} best {entry['best_value']:.4g}  {entry['best_params']}"
            )
    print(f"MLflow run: {document['run_id']} in experiment {document['experiment']!r} (trials are nested runs)")
    return EXIT_OK


# ------------------------------------------------------------------- predict
def _design(args: argparse.Namespace) -> dict[str, Any]:
    from surrogate.parameters import material_bounds

    material = args.material or DEFAULT_MATERIAL
    known = _declared(material)
    problems = []
    for name, column, value in (
        ("--anneal-temp-c", ANNEAL_TEMP_C, args.anneal_temp_c),
        ("--test-temp-c", TEST_TEMP_C, args.test_temp_c),
    ):
        # the material's own range (a pellet sinters at 1,350 °C); a material only the model declares is
        # checked against its range once the model is loaded
        low, high = (material_bounds(column, material) if known else None) or (-math.inf, math.inf)
        if not math.isfinite(value) or not low <= value <= high:
            allowed = f" for {material}" if material != DEFAULT_MATERIAL else ""
            problems.append(
                f"{name}: {value:g} °C is not a plausible temperature{allowed} (allowed {low:g} to {high:g} °C)"
            )
    if not math.isfinite(args.c_rate) or args.c_rate <= 0:
        problems.append(f"--c-rate: {args.c_rate:g} must be a positive C-rate")
    if args.cycles < 1:
        problems.append(f"--cycles: {args.cycles} must be 1 or more")
    if not math.isfinite(args.level) or not 0.0 < args.level < 1.0:
        problems.append(f"--level: {args.level:g} must be between 0 and 1 (e.g. 0.9 for a 90% interval)")
    if problems:
        raise InputError("; ".join(problems))
    return {
        BUFFER: args.buffer,
        ANNEAL_TEMP_C: args.anneal_temp_c,
        TEST_TEMP_C: args.test_temp_c,
        C_RATE: args.c_rate,
        CYCLES: args.cycles,
        PROTOCOL: args.protocol,
        MATERIAL: args.material or DEFAULT_MATERIAL,
    }


def _declared(material: str) -> bool:
    """Whether ``material`` (an id or alias) is in the process catalogue now."""
    from surrogate.materials import CATALOGUE, MATERIAL_KIND

    try:
        CATALOGUE.canonical(material, MATERIAL_KIND)
    except InputError:
        return False
    return True


def prediction_document(surrogate: Any, designs: list[dict[str, Any]], level: float) -> list[dict[str, Any]]:
    """Per design: the canonical design, per target ``mean``/``lower``/``upper``, ``extrapolation`` (+ reasons)."""
    from surrogate.models.base import design_frame

    frame = design_frame(designs)
    predicted = surrogate.predict(frame, level=level)
    out = []
    for i, row in frame.iterrows():
        design = {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
        design[CYCLES] = int(design[CYCLES])
        entry: dict[str, Any] = {"design": design}
        for target in surrogate.targets:
            entry[target] = {part: float(predicted.at[i, f"{target}_{part}"]) for part in ("mean", "lower", "upper")}
        entry["extrapolation"] = bool(predicted.at[i, "extrapolation"])
        entry["extrapolation_reasons"] = list(predicted.at[i, "extrapolation_reasons"])
        out.append(entry)
    return out


def _model_summary(surrogate: Any, model_uri: str | None) -> dict[str, Any]:
    from surrogate.dataset import trained_on_embedded_data
    from surrogate.tracking import CHAMPION_URI

    info = dict(surrogate.info)
    return {
        "uri": model_uri or CHAMPION_URI,
        "families": info.get("families"),
        "data_source": info.get("data_source"),
        "data_hash": info.get("data_hash"),
        "reconstruction": trained_on_embedded_data(info),
    }


def _predict(args: argparse.Namespace) -> int:
    design = _design(args)
    from surrogate.dataset import EMBEDDED_DATA_NOTICE, trained_on_embedded_data
    from surrogate.tracking import load_champion

    surrogate = load_champion(args.model)
    entry = prediction_document(surrogate, [design], args.level)[0]
    model = _model_summary(surrogate, args.model)
    notice = EMBEDDED_DATA_NOTICE if trained_on_embedded_data(surrogate.info) else None
    if args.json:
        print_json({"predictions": [entry], "model": model, "level": args.level, "notice": notice})
        return EXIT_OK
    shown = ", ".join(f"{k}={v}" for k, v in entry["design"].items())
    print(f"design: {shown}")
    print(f"model:  {model['uri']}  (families: {model['families']})")
    print(f"{'target':20s} {'mean':>10s}  {f'{args.level:.0%} interval':>24s}  unit")
    for target in target_names():
        if target not in entry:
            print(f"{target:20s} {'-':>10s}  {'(no model for this target)':>24s}")
            continue
        values = entry[target]
        interval = f"[{values['lower']:.4g}, {values['upper']:.4g}]"
        print(f"{target:20s} {values['mean']:>10.4g}  {interval:>24s}  {TARGET_UNITS[target]}")
    if entry["extrapolation"]:
        print("\nEXTRAPOLATION: this design lies outside the training data:")
        for reason in entry["extrapolation_reasons"]:
            print(f"  - {reason}")
    else:
        print("\nwithin the training data's ranges (interpolation)")
    print(_NOT_MEASURED)
    if notice:
        print(notice)
    return EXIT_OK


# --------------------------------------------------------------------- facts
def _facts(args: argparse.Namespace) -> int:
    from surrogate.cli.lab import print_facts
    from surrogate.facts import all_hold, check_facts
    from surrogate.tracking import load_champion, require_targets

    surrogate = load_champion(args.model)
    require_targets(surrogate, PAPER_TARGETS, args.model, "checking the paper's facts")
    results = check_facts(predict=surrogate.predict_means, include_physics_only=False)
    entries = [r.to_dict("model") for r in results]
    passed = all_hold(results)
    model = _model_summary(surrogate, args.model)
    if args.json:
        print_json(
            {"source": "trained surrogate (predicted means)", "model": model, "all_hold": passed, "facts": entries}
        )
        return EXIT_OK
    print_facts(entries, "model", f"trained surrogate {model['uri']} (predicted means)")
    return EXIT_OK


# ------------------------------------------------------------------------ ui
def _ui(args: argparse.Namespace) -> int:
    from surrogate.tracking import ARTIFACT_ROOT, ML_VIEW_QUERY, configure_mlflow, store_exists, tracking_uri

    if not 0 < args.port < 65536:
        raise InputError(f"--port: {args.port} is not a TCP port (1-65535)")
    if tracking_uri().startswith(("http://", "https://")):  # an MLflow server serves its own UI
        print(f"the MLflow UI is the tracking server's: {tracking_uri()}/#/experiments?{ML_VIEW_QUERY}")
        return EXIT_OK
    if not store_exists():  # `mlflow ui` would create an empty store: say what to do instead
        raise InputError(f"nothing tracked yet (no MLflow store at {tracking_uri()}): run `surrogate train` first")
    uri = configure_mlflow()
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        uri,
        "--default-artifact-root",
        f"./{ARTIFACT_ROOT}",
        "--workers",
        "1",
        "--host",
        args.host,
        "--port",
        str(args.port),
    ]
    print(
        f"MLflow UI on http://{args.host}:{args.port}/#/experiments?{ML_VIEW_QUERY} (store {uri}); Ctrl-C to stop",
        file=sys.stderr,
    )
    sys.stderr.flush()
    os.execv(sys.executable, command)
    return EXIT_BAD_INPUT  # not reached: execv replaces the process
