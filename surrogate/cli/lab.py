"""``surrogate lab``: the paper-calibrated virtual lab (facts check, emulated measurements, parameters)."""

from __future__ import annotations

import argparse
import sys

from surrogate.cli import EXIT_BAD_INPUT, EXIT_OK, add_json_flag, non_negative_int, print_json
from surrogate.design import (
    DEFAULT_C_RATE,
    DEFAULT_CYCLES,
    DEFAULT_PROTOCOL,
    PROTOCOLS,
    TARGET_UNITS,
    canonical_buffer,
)
from surrogate.materials import add_materials_argument, buffer_ids, load_catalogue

_NOT_MEASURED = "virtual lab: an emulation calibrated to Tan et al. 2021, not a measurement"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``lab`` command group (``facts``, ``measure``, ``params``, ``raw``)."""
    group = subparsers.add_parser(
        "lab",
        help="the paper-calibrated virtual lab: facts check, emulated measurements, parameters",
        description="The virtual lab: a physics emulator of the paper's films and cells, calibrated to its numbers.",
    )
    group.set_defaults(func=lambda args: _usage(group))
    commands = group.add_subparsers(dest="lab_command", metavar="SUBCOMMAND")

    facts = commands.add_parser(
        "facts",
        help="check every number of the paper against the noise-free lab",
        description=(
            "One line per quantitative statement of the paper: its value, the noise-free lab's value, whether it "
            "holds, and a note where the paper contradicts itself. Exit 0 when every fact that can hold does; "
            "contradictions are reported, not failed."
        ),
    )
    add_json_flag(facts)
    facts.set_defaults(func=_facts)

    measure = commands.add_parser(
        "measure",
        help="emulate one measurement of a design (conductivity, rate retention, capacity retention)",
        description=(
            "Emulate measuring one design: a fresh film for the conductivity, a fresh cell for the retentions, "
            "with the lab's seeded noise (or none with --no-noise). " + _NOT_MEASURED + "."
        ),
    )
    measure.add_argument(
        "--buffer",
        required=True,
        help=f"buffer layer: {', '.join(buffer_ids())} (aliases accepted; more with --materials)",
    )
    measure.add_argument(
        "--anneal-temp-c", type=float, required=True, help="anneal temperature, °C (25 = as-deposited)"
    )
    measure.add_argument("--test-temp-c", type=float, required=True, help="measurement / operating temperature, °C")
    measure.add_argument("--c-rate", type=float, default=DEFAULT_C_RATE, help="C-rate for rate_retention (default 30)")
    measure.add_argument(
        "--cycles", type=int, default=DEFAULT_CYCLES, help="cycle count for capacity_retention (default 100)"
    )
    measure.add_argument(
        "--protocol", default=DEFAULT_PROTOCOL, choices=PROTOCOLS, help="cycling protocol (default standard)"
    )
    measure.add_argument(
        "--seed", type=non_negative_int, default=None, help="noise seed (default: fresh noise each call)"
    )
    measure.add_argument("--no-noise", action="store_true", help="return the noise-free physics")
    add_materials_argument(measure)
    add_json_flag(measure)
    measure.set_defaults(func=_measure)

    params = commands.add_parser(
        "params",
        help="list every parameter of the lab with its source (paper or assumption) and reason",
        description="Every number the lab's physics uses, whether the paper gives it or it is an assumption, and why.",
    )
    add_materials_argument(params)
    add_json_flag(params)
    params.set_defaults(func=_params)

    raw = commands.add_parser(
        "raw",
        help="write raw instrument files (EIS spectra, cycler files) and a manifest for `surrogate data ingest`",
        description=(
            "Write the raw files the lab's instruments would have produced for a data set (default: the embedded "
            "one): an impedance spectrum per conductivity row (BioLogic .mpt or CSV, the paper's circuit "
            "R0-p(R1,CPE1) with seeded noise) and a battery-archive time series per rate or cycling cell, plus "
            "DIR/manifest.yaml. `surrogate data ingest DIR/manifest.yaml --out rows.csv` reduces them back to the "
            "rows. " + _NOT_MEASURED + "."
        ),
    )
    raw.add_argument("--out", metavar="DIR", required=True, help="folder to write into (created if missing)")
    raw.add_argument(
        "--data",
        metavar="FILE",
        default=None,
        help="a measurement table with experiment and sample_id (default: embedded)",
    )
    raw.add_argument("--eis-format", choices=("mpt", "csv"), default="mpt", help="spectrum file format (default mpt)")
    raw.add_argument(
        "--samples", default=None, help="comma-separated sample ids to write (default: all), e.g. film-300c-1,rate-sio2"
    )
    raw.add_argument("--seed", type=non_negative_int, default=0, help="noise seed of the spectra (default 0)")
    add_materials_argument(raw)
    add_json_flag(raw)
    raw.set_defaults(func=_raw)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return EXIT_BAD_INPUT


def _short(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "[" + ", ".join(_short(v) for v in value) + "]"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_short(v)}" for k, v in value.items())
    return str(value)


def print_facts(entries: list[dict], value_key: str, source: str) -> None:
    """Print checked facts as a table, the paper's contradictions in words, and the counts.

    ``value_key`` is the entry key holding the checked value (``lab`` or ``model``); ``source`` names it.
    """
    marks = {
        "ok": "ok",
        "fail": "FAIL",
        "contradiction": "CONTRA",
        "tied": "TIED",
        "recorded": "rec",
        "skipped": "skip",
    }
    for e in entries:
        print(
            f"{marks[e['status']]:6s} {e['id']:32s} paper={_short(e['paper']):>24.24s}  "
            f"{value_key}={_short(e[value_key])}"
        )
    notes = [e for e in entries if e["status"] in ("contradiction", "tied")]
    if notes:
        print("\nWhere the paper contradicts itself (TIED: a value tied by the paper to a contradicted one):")
        for e in notes:
            print(f"- {e['id']}: {e['note']}")
    counts = {s: sum(e["status"] == s for e in entries) for s in marks}
    skipped = f", {counts['skipped']} skipped (lab physics only)" if counts["skipped"] else ""
    print(
        f"\n{counts['ok']} hold, {counts['fail']} fail, {counts['contradiction']} contradictions reported "
        f"(+{counts['tied']} values tied to one), "
        f"{counts['recorded']} recorded (not modelled){skipped}. Checked against: {source}."
    )


def _facts(args: argparse.Namespace) -> int:
    from surrogate.facts import all_hold, check_facts

    results = check_facts()
    entries = [r.to_dict("lab") for r in results]
    passed = all_hold(results)
    if args.json:
        print_json({"source": "noise-free virtual lab", "all_hold": passed, "facts": entries})
    else:
        print_facts(entries, "lab", "the noise-free virtual lab")
    return EXIT_OK if passed else 1


def _measure(args: argparse.Namespace) -> int:
    from surrogate.lab import VirtualLab

    load_catalogue(args)
    lab = VirtualLab(seed=args.seed, noise=not args.no_noise)
    design = {
        "buffer": args.buffer,
        "anneal_temp_c": args.anneal_temp_c,
        "test_temp_c": args.test_temp_c,
        "c_rate": args.c_rate,
        "cycles": args.cycles,
        "protocol": args.protocol,
    }
    values = lab.measure(**design) if lab.noise else lab.truth(**design)
    if args.json:
        design["buffer"] = canonical_buffer(design["buffer"])  # valid: measuring it succeeded
        print_json(values | {"design": design, "seed": args.seed, "noise": lab.noise, "note": _NOT_MEASURED})
    else:
        for name, value in values.items():
            print(f"{name:20s} {value:.4g} {TARGET_UNITS[name]}")
        print(f"({_NOT_MEASURED}{'' if lab.noise else '; noise-free'})")
    return EXIT_OK


def _params(args: argparse.Namespace) -> int:
    from surrogate.physics import PARAMETERS, lab_buffers

    load_catalogue(args)
    rows = PARAMETERS.table()
    declared = [
        {
            "name": f"{quantity}[{buffer}]",
            "value": PARAMETERS.buffer_value(buffer, quantity),
            "unit": "-",
            "source": "materials file",
            "reason": f"declared in the catalogue entry of {buffer}",
        }
        for buffer in lab_buffers()
        for quantity in ("rate_30c", "retention_100")
        if not isinstance(_lab_entry(buffer).get(quantity), str)
    ]
    rows = rows + declared
    if args.json:
        print_json({"parameters": rows})
    else:
        for row in rows:
            print(f"{row['name']:32s} {row['value']:<10g} {row['unit']:8s} {row['source']:10s} {row['reason']}")
    return EXIT_OK


def _lab_entry(buffer: str) -> dict:
    from surrogate.materials import BUFFER_KIND, CATALOGUE

    return CATALOGUE.get(buffer, BUFFER_KIND).lab


def _raw(args: argparse.Namespace) -> int:
    from pathlib import Path

    from surrogate.lab_raw import write_raw_lab

    load_catalogue(args)
    data = None
    if args.data is not None:
        from surrogate.schema import load_measurements

        data = load_measurements(args.data)
    samples = [s.strip() for s in args.samples.split(",") if s.strip()] if args.samples else None
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        print(f"surrogate lab raw: --out {out}: not a folder", file=sys.stderr)
        return EXIT_BAD_INPUT
    manifest = write_raw_lab(out, data=data, seed=args.seed, eis_format=args.eis_format, samples=samples)
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p != manifest)
    if args.json:
        print_json({"manifest": str(manifest), "files": files, "note": _NOT_MEASURED})
    else:
        print(f"wrote {len(files)} raw files and {manifest}")
        print(f"next: surrogate data ingest {manifest} --out rows.csv")
        print(f"({_NOT_MEASURED})")
    return EXIT_OK
