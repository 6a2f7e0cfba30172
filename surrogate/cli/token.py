"""``surrogate token``: tokens of people and robots for the service (:mod:`serving.auth`).

- ``surrogate token add NAME --role read|write|admin`` adds a token to the tokens file (setting ``tokens_file``,
  else ``<home>/tokens.toml``) and prints it once on stdout; only its SHA-256 digest is written.
- ``surrogate token list`` prints every token's name, role and where it is declared (never a token or digest).

A bad name, role or tokens file is exit 2 with a message naming it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from surrogate.cli import EXIT_OK, add_json_flag, print_json


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``token`` command and its ``add`` and ``list`` subcommands."""
    from serving.auth import ROLES

    token = subparsers.add_parser(
        "token",
        help="add a service token for a person or robot (printed once, stored hashed), or list them",
        description=(
            "Tokens of the service, one per person or robot, with a role: read (predict, status), write "
            "(suggest, observe, create), admin (reload). The tokens file is the tokens_file setting "
            "(SURROGATE_TOKENS_FILE), else <home>/tokens.toml; it holds SHA-256 digests only. See docs/team.md."
        ),
    )
    actions = token.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="add a token; it is printed once and never stored")
    add.add_argument("name", help="who holds it: a person or robot (letters, digits, _.@-; at most 64)")
    add.add_argument("--role", choices=ROLES, default="read", help="what it may do (default: read)")
    add.add_argument("--file", type=Path, default=None, help="tokens file (default: the tokens_file setting)")
    add_json_flag(add)
    add.set_defaults(func=_add)
    listing = actions.add_parser("list", help="names and roles of every token the service accepts")
    listing.add_argument("--file", type=Path, default=None, help="tokens file (default: the tokens_file setting)")
    add_json_flag(listing)
    listing.set_defaults(func=_list)


def _path(args: argparse.Namespace) -> Path:
    from serving.auth import tokens_path
    from surrogate.settings import get_settings

    return args.file if args.file is not None else tokens_path(get_settings())


def _add(args: argparse.Namespace) -> int:
    from serving.auth import add_token

    path = _path(args)
    token = add_token(path, args.name, args.role)
    if args.json:
        print_json({"name": args.name, "role": args.role, "token": token, "tokens_file": str(path)})
    else:
        print(token)
        print(
            f"token of {args.name!r} (role {args.role}) added to {path}: this is the only time it is shown; "
            "the file keeps its SHA-256 digest. Send it as 'Authorization: Bearer <token>'.",
            file=sys.stderr,
        )
    return EXIT_OK


def _list(args: argparse.Namespace) -> int:
    from serving.auth import read_tokens_file, token_entries
    from surrogate.settings import get_settings

    entries = read_tokens_file(args.file) if args.file is not None else token_entries(get_settings())
    rows = [{"name": entry.name, "role": entry.role, "declared_in": entry.source} for entry in entries]
    if args.json:
        print_json({"tokens": rows})
        return EXIT_OK
    if not rows:
        print("no tokens: every endpoint is open (add one with `surrogate token add NAME --role ROLE`)")
        return EXIT_OK
    width = max(len(row["name"]) for row in rows)
    for row in rows:
        print(f"{row['name']:<{width}}  {row['role']:<5}  ({row['declared_in']})")
    return EXIT_OK
