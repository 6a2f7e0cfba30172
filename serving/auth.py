"""Group access: one bearer token per person or robot, stored hashed, each with a role (issue 18).

Roles, each including the ones before it:

- ``read``: predict, model information, search, campaign status (``GET /campaigns``, ``GET /campaigns/NAME``),
  ``/metrics``;
- ``write``: ``/suggest``, ``/observe``, ``POST /campaigns`` (create), ``/ingest``;
- ``admin``: ``POST /admin/reload``.

Where the tokens come from (:func:`token_entries`):

- the tokens file (setting ``tokens_file``, ``SURROGATE_TOKENS_FILE``; default ``<home>/tokens.toml`` when it
  exists), written by ``surrogate token add NAME --role ROLE``, which prints the token once;
- ``[[tokens]]`` entries in the settings file (``name``, ``role``, ``sha256``);
- the single ``api_token`` of earlier versions, as the principal ``api_token`` with role ``admin`` (``write``
  when a separate ``admin_token`` is set, which then is the principal ``admin_token`` with role ``admin``).

Only the SHA-256 digest of a token is stored: a generated token holds 256 random bits (:func:`new_token`), so
one unsalted hash cannot be reversed by guessing and costs one hash per request. A presented token is hashed
once and compared with :func:`hmac.compare_digest` against *every* entry, without stopping at a match, so a
wrong token costs the same time as a right one.

The caller's name is put into the ASGI scope (``scope["state"]["principal"]``, i.e. ``request.state``) and into a
context variable for the request's task and the threads it starts: :func:`principal`.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import hashlib
import hmac
import re
import secrets
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from surrogate.errors import InputError

ROLES: tuple[str, ...] = ("read", "write", "admin")
"""The roles, lowest first; a role may do everything the ones before it may."""
STATE_KEY = "principal"
"""Key of the caller's name in the ASGI scope's ``state``."""
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
"""A token's name: a person or robot, 1-64 characters of letters, digits and ``_.@-``."""
TOKEN_BYTES = 32
"""Random bytes in a generated token (256 bits)."""
TOKEN_PREFIX = "sgt_"
DIGEST_PATTERN = re.compile(r"^[0-9a-f]{64}$")

_current: contextvars.ContextVar[str | None] = contextvars.ContextVar("surrogate_principal", default=None)


@dataclass(frozen=True)
class TokenEntry:
    """One token holder: ``name`` (person or robot), ``role`` (one of :data:`ROLES`), ``sha256`` (hex digest)."""

    name: str
    role: str
    sha256: str
    source: str = ""
    """Where the entry was declared (a file path, ``settings``, ``api_token``), for messages."""
    created: str | None = None
    """When ``surrogate token add`` made it (UTC, ISO 8601), if known."""

    def allows(self, needed: str) -> bool:
        """Whether this entry's role includes ``needed``."""
        return role_rank(self.role) >= role_rank(needed)


@dataclass(frozen=True)
class Principal:
    """Who sent a request: the token's ``name`` and ``role``."""

    name: str
    role: str


def role_rank(role: str) -> int:
    """The position of ``role`` in :data:`ROLES` (read 0, write 1, admin 2)."""
    return ROLES.index(role)


def digest(token: str) -> str:
    """The stored form of ``token``: SHA-256 of its UTF-8 bytes, hex."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A fresh token: ``sgt_`` and 256 random bits, URL-safe (shown once, never stored)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def check_entry(raw: Mapping[str, Any], where: str) -> TokenEntry:
    """A token entry from a file or the settings, or an :class:`InputError` naming ``where`` and the field."""
    if not isinstance(raw, Mapping):
        raise InputError(f"{where}: a token entry must be a table with name, role and sha256, not {raw!r}")
    unknown = set(raw) - {"name", "role", "sha256", "created"}
    if unknown:
        raise InputError(f"{where}: unknown key(s) {sorted(unknown)} (known: name, role, sha256, created)")
    name, role, hashed = raw.get("name"), raw.get("role"), raw.get("sha256")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise InputError(f"{where}: name {name!r} must be 1-64 letters, digits or _.@- (a person or robot)")
    if role not in ROLES:
        raise InputError(f"{where}: token {name!r}: role {role!r} must be one of {', '.join(ROLES)}")
    if not isinstance(hashed, str) or not DIGEST_PATTERN.match(hashed):
        raise InputError(
            f"{where}: token {name!r}: sha256 must be the 64 hex digits of the token's SHA-256 "
            "(never the token itself; `surrogate token add` writes it)"
        )
    created = raw.get("created")
    return TokenEntry(name=name, role=str(role), sha256=hashed, source=where, created=str(created) if created else None)


def read_tokens_file(path: Path) -> list[TokenEntry]:
    """The ``[[token]]`` entries of a tokens file (TOML); an :class:`InputError` naming the file and entry."""
    try:
        with path.open("rb") as handle:
            document = tomllib.load(handle)
    except FileNotFoundError:
        raise InputError(f"tokens file {path}: does not exist (create it with `surrogate token add NAME`)") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"tokens file {path}: not valid TOML ({exc})") from None
    except OSError as exc:
        raise InputError(f"tokens file {path}: cannot be read ({exc.strerror})") from None
    unknown = set(document) - {"token"}
    if unknown:
        raise InputError(f"tokens file {path}: unknown key(s) {sorted(unknown)} (expected [[token]] tables)")
    entries = document.get("token", [])
    if not isinstance(entries, list):
        raise InputError(f"tokens file {path}: 'token' must be a list of [[token]] tables")
    return [check_entry(raw, f"tokens file {path}, entry {index + 1}") for index, raw in enumerate(entries)]


def write_tokens_file(path: Path, entries: Iterable[Mapping[str, Any]]) -> None:
    """Write ``entries`` (name, role, sha256, created) to ``path`` whole: a temporary file renamed over it, mode 0600."""
    lines = ["# surrogate tokens: SHA-256 digests only, never the tokens (surrogate token add NAME --role ROLE)\n"]
    for entry in entries:
        lines.append("\n[[token]]\n")
        for key in ("name", "role", "sha256", "created"):
            if entry.get(key) is not None:
                lines.append(f'{key} = "{entry[key]}"\n')
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    temporary.write_text("".join(lines), encoding="utf-8")
    temporary.chmod(0o600)
    temporary.replace(path)


def add_token(path: Path, name: str, role: str) -> str:
    """Add a token for ``name`` with ``role`` to the tokens file at ``path``; the new token (shown once).

    An existing name is an :class:`InputError` (remove the entry from the file first to replace it).
    """
    if not NAME_PATTERN.match(name):
        raise InputError(f"name {name!r} must be 1-64 letters, digits or _.@- (a person or robot)")
    if role not in ROLES:
        raise InputError(f"role {role!r} must be one of {', '.join(ROLES)}")
    existing = read_tokens_file(path) if path.exists() else []
    if any(entry.name == name for entry in existing):
        raise InputError(f"tokens file {path}: {name!r} already has a token (delete its [[token]] entry to replace it)")
    token = new_token()
    created = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    rows: list[dict[str, Any]] = [
        {"name": e.name, "role": e.role, "sha256": e.sha256, "created": e.created} for e in existing
    ]
    rows.append({"name": name, "role": role, "sha256": digest(token), "created": created})
    write_tokens_file(path, rows)
    return token


def tokens_path(settings: Any) -> Path:
    """The tokens file in force: the ``tokens_file`` setting, else ``<home>/tokens.toml``."""
    return Path(settings.tokens_file) if settings.tokens_file is not None else Path(settings.home) / "tokens.toml"


def token_entries(settings: Any) -> list[TokenEntry]:
    """Every token the service accepts (see the module docstring); an :class:`InputError` for a bad entry.

    Two entries with the same name, or the same token under two names, are refused: the name a request is
    recorded under must be unambiguous.
    """
    entries: list[TokenEntry] = []
    path = tokens_path(settings)
    if settings.tokens_file is not None or path.is_file():
        entries += read_tokens_file(path)
    entries += [check_entry(raw, f"settings tokens entry {i + 1}") for i, raw in enumerate(settings.tokens)]
    if settings.api_token is not None:
        role = "write" if settings.admin_token is not None else "admin"
        entries.append(TokenEntry("api_token", role, digest(settings.api_token.get_secret_value()), "api_token"))
    if settings.admin_token is not None:
        entries.append(TokenEntry("admin_token", "admin", digest(settings.admin_token.get_secret_value()), "admin"))
    seen_names: dict[str, TokenEntry] = {}
    seen_digests: dict[str, TokenEntry] = {}
    for entry in entries:
        if entry.name in seen_names:
            raise InputError(
                f"token name {entry.name!r} is declared twice ({seen_names[entry.name].source}, {entry.source})"
            )
        if entry.sha256 in seen_digests:
            other = seen_digests[entry.sha256]
            raise InputError(f"tokens {other.name!r} and {entry.name!r} are the same token: give each its own")
        seen_names[entry.name], seen_digests[entry.sha256] = entry, entry
    return entries


def find_principal(entries: Iterable[TokenEntry], token: bytes) -> Principal | None:
    """The holder of ``token`` among ``entries``, or None; the same work for a right and a wrong token.

    The token is hashed once; its digest is compared with :func:`hmac.compare_digest` against every entry
    (no early exit), so the time taken does not tell whether, or which, entry matched.
    """
    given = hashlib.sha256(token).hexdigest().encode("ascii")
    found: TokenEntry | None = None
    for entry in entries:
        if hmac.compare_digest(given, entry.sha256.encode("ascii")) and found is None:
            found = entry
    return Principal(found.name, found.role) if found is not None else None


def bearer_token(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """The token of an ``Authorization: Bearer <token>`` header (raw bytes), or None when there is none."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, given = value.partition(b" ")
            if scheme.lower() != b"bearer":
                return None
            return given.strip()
    return None


def required_role(method: str, path: str, *, metrics_public: bool, predict_public: bool) -> str | None:
    """The role ``method path`` needs, or None for an open path (health, docs, unknown paths' 404)."""
    if path == "/admin/reload" or path.startswith("/admin/"):
        return "admin"
    if path in ("/suggest", "/observe", "/ingest"):
        return "write"
    if path == "/campaigns" or path.startswith("/campaigns/"):
        return "read" if method in ("GET", "HEAD") else "write"
    if path == "/search":
        return "read"
    if path == "/metrics":
        return None if metrics_public else "read"
    if path in ("/predict", "/model_info"):
        return None if predict_public else "read"
    return None


def set_principal(scope: dict[str, Any] | Any, who: Principal | None) -> contextvars.Token:
    """Record ``who`` for this request: in ``scope["state"]`` and in the context variable (returns its reset token)."""
    scope.setdefault("state", {})[STATE_KEY] = who.name if who is not None else None
    return _current.set(who.name if who is not None else None)


def reset_principal(token: contextvars.Token) -> None:
    """Undo :func:`set_principal`'s context variable after the request."""
    _current.reset(token)


def principal(request: Any = None) -> str | None:
    """The name of the token holder who sent the request being answered, or None (no tokens configured).

    ``request`` is a Starlette request (``request.scope["state"]``); without one, the context variable the
    middleware set for the request's task (also visible in the worker threads it starts) is read, so a BentoML
    API method can call ``principal()`` without taking the request.
    """
    if request is not None:
        state = getattr(request, "scope", {}).get("state") or {}
        return state.get(STATE_KEY)
    return _current.get()
