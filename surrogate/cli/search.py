"""``surrogate search`` (Optuna over the surrogate) and ``surrogate campaign`` (ask/tell for a lab)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from surrogate.cli import EXIT_BAD_INPUT, EXIT_OK, add_json_flag, non_negative_int, print_json
from surrogate.design import DEFAULT_C_RATE, DEFAULT_CYCLES, DEFAULT_PROTOCOL, PROTOCOLS
from surrogate.errors import InputError
from surrogate.materials import add_materials_argument
from surrogate.objectives import OBJECTIVE_KINDS


def _add_objective_args(parser: argparse.ArgumentParser, multiple: bool) -> None:
    kinds = ", ".join(OBJECTIVE_KINDS)
    if multiple:
        parser.add_argument(
            "--objective",
            action="append",
            choices=list(OBJECTIVE_KINDS),
            help=f"what to maximise ({kinds}); repeat for a Pareto front (default: rate_retention)",
        )
        parser.add_argument(
            "--pareto",
            action="store_true",
            help="Pareto front over conductivity, rate retention at 30 C and capacity retention after 100 cycles",
        )
    else:
        parser.add_argument(
            "--objective", required=True, choices=list(OBJECTIVE_KINDS), help=f"what to maximise ({kinds})"
        )
    parser.add_argument("--c-rate", type=float, default=DEFAULT_C_RATE, help="C-rate of rate_retention (default 30)")
    parser.add_argument("--cycles", type=int, default=DEFAULT_CYCLES, help="cycles of capacity_retention (default 100)")
    parser.add_argument("--protocol", default=DEFAULT_PROTOCOL, choices=PROTOCOLS, help="cycling protocol")
    parser.add_argument(
        "--test-temp-c", type=float, default=None, help="fixed operating temperature, °C (default: free)"
    )
    parser.add_argument("--space", default=None, help="YAML design space (default: the paper's space)")
    parser.add_argument(
        "--storage", default=None, help="Optuna storage URL (default: $SURROGATE_OPTUNA_STORAGE or local SQLite)"
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``search`` and the ``campaign`` group (create, suggest, observe, status, list)."""
    search = subparsers.add_parser(
        "search",
        help="search the design space on the champion surrogate with Optuna",
        description=(
            "Optuna search over buffer, anneal and operating temperature on the surrogate: predictions, not "
            "measurements. The output's note names what the model was trained on (the embedded reconstruction "
            "of the paper, or your own file)."
        ),
    )
    _add_objective_args(search, multiple=True)
    search.add_argument("--model", default=None, help="MLflow model URI (default: the registered champion)")
    search.add_argument(
        "--statistic",
        choices=("lower", "mean"),
        default="lower",
        help="what is maximised: the interval's lower bound (default: risk-aware, it penalises designs the model "
        "knows little about) or the posterior mean",
    )
    search.add_argument("--risk-aware", action="store_true", help="same as --statistic lower (the default)")
    search.add_argument("--trials", type=int, default=200, help="Optuna trials (default 200)")
    search.add_argument("--study-name", default=None, help="Optuna study name (resumed if it exists)")
    search.add_argument("--seed", type=non_negative_int, default=0, help="random seed of the search (>= 0)")
    search.add_argument("--level", type=float, default=0.9, help="central interval level (default 0.9)")
    search.add_argument("--top", type=int, default=10, help="designs shown for a single objective")
    add_json_flag(search)
    add_materials_argument(search)
    search.set_defaults(func=_search)

    group = subparsers.add_parser(
        "campaign",
        help="design-of-experiment campaigns: what to measure next (ask/tell, state in Optuna storage)",
        description="Ask/tell campaigns for a lab: create, suggest, observe results, status.",
    )
    group.set_defaults(func=lambda args: _usage(group))
    commands = group.add_subparsers(dest="campaign_command", metavar="SUBCOMMAND")

    create = commands.add_parser("create", help="create a campaign", description="Create a campaign.")
    create.add_argument("name")
    _add_objective_args(create, multiple=False)
    create.add_argument(
        "--warm-start", default=None, help="measurements to start from: a CSV/Parquet file, or 'embedded' (paper data)"
    )
    create.add_argument("--seed", type=non_negative_int, default=0, help="random seed of the campaign (>= 0)")
    create.add_argument(
        "--lease-s",
        type=float,
        default=None,
        help="seconds a suggestion stays pending without a result before it goes back to the pool "
        "(default: $SURROGATE_LEASE_S, else 86400 = 24 h)",
    )
    add_json_flag(create)
    add_materials_argument(create)
    create.set_defaults(func=_create)

    suggest = commands.add_parser("suggest", help="designs to measure next", description="Suggest the next designs.")
    suggest.add_argument("name")
    suggest.add_argument("--n", type=int, default=1, help="how many designs (default 1)")
    suggest.add_argument("--client-id", default=None, help="retries with the same id get the same pending batch")
    suggest.add_argument("--storage", default=None)
    add_json_flag(suggest)
    add_materials_argument(suggest)
    suggest.set_defaults(func=_suggest)

    observe = commands.add_parser(
        "observe",
        help="record measured results (CSV/Parquet, validated like any data file)",
        description=(
            "Record results: design columns, the objective's targets at its conditions, optional 'trial' (the "
            "suggestion's number), 'status' (ok, failed, infeasible) and 'reason'. All rows or nothing, in one "
            "transaction; at most 10,000 rows per file (the HTTP limit too): split larger files."
        ),
    )
    observe.add_argument("name")
    observe.add_argument("file")
    observe.add_argument("--storage", default=None)
    observe.add_argument(
        "--recorded-by",
        default=None,
        metavar="NAME",
        help="who sends these results (a person or robot), stored with each observation (default: the OS user name)",
    )
    add_json_flag(observe)
    add_materials_argument(observe)
    observe.set_defaults(func=_observe)

    renew = commands.add_parser(
        "renew",
        help="extend the lease of pending suggestions (a heartbeat for workers that hold them long)",
        description=(
            "Extend the lease of pending suggestions by the campaign's lease: the trials given, or all of a "
            "client id. Exit 2 when one of them is no longer pending (observed, failed, or its lease ran out)."
        ),
    )
    renew.add_argument("name")
    renew.add_argument(
        "--trial", type=non_negative_int, nargs="+", action="extend", help="trial numbers (--trial 0 1, or repeated)"
    )
    renew.add_argument("--client-id", default=None, help="every pending suggestion of this client id")
    renew.add_argument("--storage", default=None)
    add_json_flag(renew)
    renew.set_defaults(func=_renew)

    status = commands.add_parser("status", help="counts, best so far, pending", description="Campaign status.")
    status.add_argument("name")
    status.add_argument("--storage", default=None)
    add_json_flag(status)
    add_materials_argument(status)
    status.set_defaults(func=_status)

    recorded = commands.add_parser(
        "observations",
        help="every recorded experiment: design, results, sample, who sent it, when",
        description="List the campaign's recorded experiments (observed and failed), with who recorded each.",
    )
    recorded.add_argument("name")
    recorded.add_argument("--storage", default=None)
    add_json_flag(recorded)
    add_materials_argument(recorded)
    recorded.set_defaults(func=_observations)

    listing = commands.add_parser("list", help="list campaigns", description="List the campaigns in the storage.")
    listing.add_argument("--storage", default=None)
    add_json_flag(listing)
    listing.set_defaults(func=_list)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return EXIT_BAD_INPUT


def _space(args: argparse.Namespace):
    from surrogate.design import DesignSpace
    from surrogate.errors import InputError

    if not args.space:
        return DesignSpace()
    try:
        return DesignSpace.from_yaml(args.space)
    except OSError as exc:
        raise InputError(f"--space: cannot read {args.space} ({exc.strerror or exc})") from None


def _campaign_space(args: argparse.Namespace):
    """The space of ``campaign create``: ``--space`` (default the paper's), plus the buffers the ``--materials``
    files declare, unless the space file lists its own ``buffers``."""
    from dataclasses import replace

    import yaml

    from surrogate.materials import BUFFER_KIND, read_materials_file

    space = _space(args)
    declared = [m.id for path in args.materials or [] for m in read_materials_file(path) if m.kind == BUFFER_KIND]
    if not declared:
        return space
    if args.space:
        with open(args.space, encoding="utf-8") as handle:  # read (and checked) by _space just before
            if "buffers" in (yaml.safe_load(handle) or {}):
                return space
    return replace(space, buffers=(*space.buffers, *(b for b in declared if b not in space.buffers)))


def _objective(args: argparse.Namespace, kind: str, statistic: str = "mean"):
    from surrogate.objectives import Objective

    return Objective(
        kind,
        c_rate=args.c_rate,
        cycles=args.cycles,
        protocol=args.protocol,
        test_temp_c=args.test_temp_c,
        statistic=statistic,
    )


def _fmt(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _search(args: argparse.Namespace) -> int:
    from surrogate.objectives import pareto_objectives
    from training.search import search_and_log

    statistic = "lower" if args.risk_aware else args.statistic
    if args.top < 1:
        raise InputError(f"--top: {args.top} must be at least 1")
    if args.pareto and args.objective:
        raise InputError("--pareto and --objective: choose one (--pareto is the three-objective front)")
    if args.pareto:
        objectives = pareto_objectives(statistic)
    else:
        objectives = [_objective(args, kind, statistic) for kind in (args.objective or ["rate_retention"])]
    if args.space:  # the space may name buffers the model was trained on: loading it declares them (no file needed)
        from surrogate.tracking import load_champion

        load_champion(args.model)
    result, run_id = search_and_log(
        objectives,
        _space(args),
        args.model,
        args.trials,
        args.storage,
        args.study_name,
        args.seed,
        args.level,
        show_progress=not args.json,
    )
    if args.json:
        print_json(result.to_dict() | {"mlflow_run_id": run_id})
        return EXIT_OK
    names = [o.name for o in objectives]
    print(f"study {result.study_name} ({result.n_feasible}/{result.n_trials} feasible trials), MLflow run {run_id}")
    print(
        f"{'buffer':9s} {'anneal°C':>8s} {'test°C':>7s}  " + "  ".join(f"{n} mean [{result.level:.0%}]" for n in names)
    )
    from surrogate.search import PROMISING, PROMISING_HELP, SUPPORTED, SUPPORTED_HELP

    for label, explanation in ((SUPPORTED, SUPPORTED_HELP), (PROMISING, PROMISING_HELP)):
        front = result.designs[result.designs["front"] == label]
        print(f"\n-- {label}: {explanation}" + ("" if len(front) else " (none found)"))
        for row in front.to_dict("records"):
            cells = "  ".join(
                f"{_fmt(row[n + '_mean'])} [{_fmt(row[n + '_lower'])}, {_fmt(row[n + '_upper'])}]" for n in names
            )
            flag = "  EXTRAPOLATION" if row["extrapolation"] else ""
            print(f"{row['buffer']:9s} {row['anneal_temp_c']:8.1f} {row['test_temp_c']:7.1f}  {cells}{flag}")
    _explain_extrapolation(result.designs)
    print(f"({result.provenance})")
    return EXIT_OK


def _explain_extrapolation(designs: Any) -> None:
    """Say, in words, what the model has no data on when the designs shown lie outside its training data."""
    import re

    flagged = designs[designs["extrapolation"]]
    if flagged.empty:
        return
    gaps = sorted(
        {
            m.group(1, 2)
            for reasons in flagged["extrapolation_reasons"]
            for reason in reasons
            if (m := re.match(r"(\w+): (\w+)=", reason))
        }
    )
    what = "; ".join(f"{target} beyond the trained {column}" for target, column in gaps)
    share = "All" if len(flagged) == len(designs) else f"{len(flagged)} of {len(designs)}"
    print(
        f"\n{share} designs above are EXTRAPOLATIONS ({what}). There the model has no data on how those targets "
        "change, so their ranking reflects the model's assumptions, not measurements: measure such designs "
        "before trusting them (e.g. with `surrogate campaign`)."
    )


def _create(args: argparse.Namespace) -> int:
    from surrogate.campaign import Campaign

    warm, source = None, None
    if args.warm_start:
        if args.warm_start == "embedded":
            from surrogate.dataset import DATASET_FILENAME, load_default_dataset

            warm, source = load_default_dataset(), f"embedded: {DATASET_FILENAME} (reconstruction, not measured)"
        else:
            from surrogate.schema import load_measurements

            warm, source = load_measurements(args.warm_start), args.warm_start
    campaign = Campaign.create(
        args.name,
        _objective(args, args.objective),
        _campaign_space(args),
        args.storage,
        warm,
        source,
        args.seed,
        args.lease_s,
    )
    status = campaign.status()
    if args.json:
        print_json(status)
    else:
        print(f"campaign {campaign.name} created: maximise {campaign.objective.name} ({campaign.objective.unit})")
        print(f"warm-start rows: {status['warm_start_rows']}")
    return EXIT_OK


def _suggest(args: argparse.Namespace) -> int:
    from surrogate.campaign import Campaign

    suggestions = Campaign.load(args.name, args.storage).suggest(args.n, args.client_id)
    if args.json:
        print_json({"campaign": args.name, "suggestions": [s.to_dict() for s in suggestions]})
    else:
        for s in suggestions:
            d = s.design
            print(
                f"trial {s.trial:4d}  {d['buffer']:9s} anneal {d['anneal_temp_c']:6.1f} °C  test {d['test_temp_c']:6.1f} °C"
                f"  ({s.method})"
            )
    return EXIT_OK


def _observe(args: argparse.Namespace) -> int:
    from pathlib import Path

    from surrogate.campaign import Campaign, read_observations

    campaign = Campaign.load(args.name, args.storage)  # before reading the file: an unknown campaign is named first
    sender = args.recorded_by if args.recorded_by is not None else _os_user()
    outcome = campaign.observe(read_observations(args.file), Path(args.file).name, recorded_by=sender)
    if args.json:
        print_json(outcome)
    else:
        by = f" recorded by {outcome['recorded_by']}" if outcome["recorded_by"] else ""
        print(f"{outcome['observed']} observation(s), {outcome['failed']} failed, trials {outcome['trials']}{by}")
        if outcome["already_recorded"]:
            print(f"already recorded before (not written again): trials {outcome['already_recorded']}")
    return EXIT_OK


def _os_user() -> str | None:
    """The OS user name (``getpass.getuser``), or None when the system has none (a container without a passwd entry)."""
    import getpass

    try:
        return getpass.getuser().strip() or None
    except (OSError, KeyError, ImportError):
        return None


def _observations(args: argparse.Namespace) -> int:
    from surrogate.campaign import Campaign

    entries = Campaign.load(args.name, args.storage).recorded()
    if args.json:
        print_json({"campaign": args.name, "observations": entries})
        return EXIT_OK
    if not entries:
        print(f"campaign {args.name}: nothing recorded yet")
    for e in entries:
        result = f"-> {e['objective']:.4g}" if e["status"] == "observed" else f"FAILED ({e['reason']})"
        sample = f" sample {e['sample_id']}" if e["sample_id"] else ""
        print(
            f"trial {e['trial']:4d}  {e['buffer']:9s} anneal {e['anneal_temp_c']:6.1f} °C  test "
            f"{e['test_temp_c']:6.1f} °C  {result}{sample}  recorded by {e['recorded_by'] or '(not given)'}"
            f" at {e['observed_at'] or '?'}"
        )
    return EXIT_OK


def _renew(args: argparse.Namespace) -> int:
    from surrogate.campaign import Campaign

    renewed = Campaign.load(args.name, args.storage).renew(args.trial, args.client_id)
    if args.json:
        print_json(
            {
                "campaign": args.name,
                "renewed": [{"trial": s.trial, "lease_expires_at": s.lease_expires_at} for s in renewed],
            }
        )
    else:
        for s in renewed:
            print(f"trial {s.trial}: lease until {s.lease_expires_at}")
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    from surrogate.campaign import Campaign

    status = Campaign.load(args.name, args.storage).status()
    if args.json:
        print_json(status)
        return EXIT_OK
    print(f"campaign {status['campaign']}: maximise {status['objective']['name']}")
    print(
        f"observed {status['observed']}, failed {status['failed']}, pending {status['pending']}, "
        f"expired (returned to the pool unanswered) {status['expired']}; lease {status['lease_s']:g} s"
    )
    if status["warm_start_rows"]:
        print(f"warm start: {status['warm_start_rows']} rows from {status['warm_start_source']} (not counted above)")
    if status["best"]:
        b = status["best"]
        by = f", recorded by {b['recorded_by']}" if b.get("recorded_by") else ""
        print(
            f"best so far: trial {b['trial']} {b['buffer']} anneal {b['anneal_temp_c']:.1f} °C test "
            f"{b['test_temp_c']:.1f} °C -> {b['objective']:.4g} (one noisy reading{by})"
        )
    r = status["recommended"]
    d = r["design"]
    print(
        f"recommended (the model's best posterior mean): {d['buffer']} anneal {d['anneal_temp_c']:.1f} °C test "
        f"{d['test_temp_c']:.1f} °C -> {r['mean']:.4g} [{r['lower']:.4g}, {r['upper']:.4g}] at {r['level']:.0%}"
        + (f"; EXTRAPOLATION: {'; '.join(r['extrapolation_reasons'])}" if r["extrapolation"] else "")
    )
    for s in status["pending_suggestions"]:
        print(
            f"pending trial {s['trial']}: {s['buffer']} {s['anneal_temp_c']:.1f} °C / {s['test_temp_c']:.1f} °C"
            f" (lease until {s['lease_expires_at']})"
        )
    return EXIT_OK


def _list(args: argparse.Namespace) -> int:
    from surrogate.campaign import list_campaigns

    campaigns = list_campaigns(args.storage)
    if args.json:
        print_json({"campaigns": campaigns})
    elif not campaigns:
        print("no campaigns yet (create one with `surrogate campaign create NAME --objective K`)")
    else:
        for c in campaigns:
            print(f"{c['name']:30s} {c['objective']:50s} trials {c['trials']}")
    return EXIT_OK
