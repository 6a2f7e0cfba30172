"""``surrogate config``: the resolved settings (:mod:`surrogate.settings`), where each comes from, secrets masked.

A bad value (in the environment or the settings file) is reported naming the variable or key: exit 2.
"""

from __future__ import annotations

import argparse

from surrogate.cli import EXIT_OK, add_json_flag, print_json


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``config`` command, and ``token`` (:mod:`surrogate.cli.token`), which belongs with the settings."""
    config = subparsers.add_parser(
        "config",
        help="print the resolved settings (environment, settings file, defaults), secrets masked",
        description=(
            "Print every setting with its value and where it comes from: an environment variable "
            "(MLFLOW_TRACKING_URI, SURROGATE_*), the settings file ($SURROGATE_SETTINGS_FILE, else ./surrogate.toml) "
            "or the default. Tokens and passwords (also inside URLs) are masked. See docs/team.md."
        ),
    )
    add_json_flag(config)
    config.set_defaults(func=_config)
    from surrogate.cli import token

    token.register(subparsers)


def _config(args: argparse.Namespace) -> int:
    from surrogate.settings import get_settings, masked, settings_file

    resolved = masked(get_settings())
    if args.json:
        path = settings_file()
        print_json({"settings_file": str(path) if path else None, "settings": resolved})
        return EXIT_OK
    path = settings_file()
    print(f"settings file: {path if path else 'none (set SURROGATE_SETTINGS_FILE or create ./surrogate.toml)'}")
    width = max(len(name) for name in resolved)
    for name, entry in resolved.items():
        value = entry["value"]
        shown = "-" if value is None or value == [] else str(value)
        source = entry["source"] if entry["source"] != "default" else f"default; set with {' or '.join(entry['env'])}"
        print(f"{name:<{width}}  {shown}  ({source})")
    return EXIT_OK
