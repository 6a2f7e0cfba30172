"""Every setting of the project in one object (pydantic-settings), read once: :func:`get_settings`.

Where a value comes from, highest first:

1. the environment (the variable names below; an empty variable counts as unset);
2. a TOML settings file: ``$SURROGATE_SETTINGS_FILE`` when set (it must exist), else ``./surrogate.toml`` when
   there is one; its keys are the field names (``tracking_uri = "http://mlflow:5000"``); an unknown key is an error;
3. the defaults below.

Command-line flags (``--storage``, ``--model``, ``--materials``) still win over all three where a command has them.

| field | environment | default | what |
|---|---|---|---|
| ``tracking_uri`` | ``MLFLOW_TRACKING_URI`` (or ``SURROGATE_TRACKING_URI``) | ``sqlite:///mlruns/mlflow.db`` | MLflow runs |
| ``registry_uri`` | ``MLFLOW_REGISTRY_URI`` (or ``SURROGATE_REGISTRY_URI``) | the tracking URI | MLflow model registry |
| ``tracking_username`` / ``tracking_password`` | ``MLFLOW_TRACKING_USERNAME`` / ``_PASSWORD`` | none | basic auth |
| ``optuna_storage`` | ``SURROGATE_OPTUNA_STORAGE`` | SQLite under ``home`` | the campaign store |
| ``home`` | ``SURROGATE_HOME`` | ``./.surrogate`` | local state folder |
| ``lease_s`` | ``SURROGATE_LEASE_S`` | none (24 h) | lease of a suggestion, seconds |
| ``materials`` | ``SURROGATE_MATERIALS`` (``os.pathsep``-separated) | none | materials files |
| ``model_uri`` | ``SURROGATE_MODEL_URI`` | the champion | the model the service answers with |
| ``bento_model`` | ``SURROGATE_BENTO_MODEL`` | none | BentoML model tag of a built Bento |
| ``workers`` | ``SURROGATE_WORKERS`` | 1 | service worker processes |
| ``access_log`` | ``SURROGATE_ACCESS_LOG`` | false | per-request access log |
| ``api_token`` | ``SURROGATE_API_TOKEN`` | none | bearer token of campaigns and search (secret) |
| ``admin_token`` | ``SURROGATE_ADMIN_TOKEN`` | the API token | bearer token of ``POST /admin/reload`` (secret) |
| ``tokens_file`` | ``SURROGATE_TOKENS_FILE`` | ``<home>/tokens.toml`` if present | hashed tokens with roles (``serving.auth``) |
| ``tokens`` | ``SURROGATE_TOKENS`` (JSON list) | none | ``[[tokens]]`` entries: ``name``, ``role``, ``sha256`` |
| ``predict_public`` | ``SURROGATE_PREDICT_PUBLIC`` | true | ``/predict``, ``/model_info`` without a token |
| ``metrics_public`` | ``SURROGATE_METRICS_PUBLIC`` | false | ``/metrics`` without the token |
| ``max_body_bytes`` | ``SURROGATE_MAX_BODY_BYTES`` | 16 MiB | request body limit, bytes |
| ``request_timeout_s`` | ``SURROGATE_REQUEST_TIMEOUT_S`` | 60 | service answer timeout, seconds |
| ``model_retry_s`` | ``SURROGATE_MODEL_RETRY_S`` | 10 | seconds between loads while the service has no model |
| ``ingest_max_files`` | ``SURROGATE_INGEST_MAX_FILES`` | 100 | raw files in one ``POST /ingest`` |
| ``ingest_max_file_bytes`` | ``SURROGATE_INGEST_MAX_FILE_BYTES`` | 4 MiB | one uploaded file of ``POST /ingest``, bytes |
| ``ingest_max_total_bytes`` | ``SURROGATE_INGEST_MAX_TOTAL_BYTES`` | 12 MiB | all files of one ``POST /ingest``, bytes |
| ``champion_poll_s`` | ``SURROGATE_CHAMPION_POLL_S`` | 30 | seconds between registry checks for a new ``@champion`` (0: off) |

A bad value raises :class:`~surrogate.errors.InputError` naming the variable (or the file key) and why; the CLI
turns it into exit 2. The parsed object is cached: it is read again only when one of the variables above,
the settings file or the working directory changes (tests and long-lived processes see their changes).
``surrogate config`` prints the resolved settings with secrets masked.
"""

from __future__ import annotations

import os
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings import TomlConfigSettingsSource as _Toml

from surrogate.errors import InputError

ENV_PREFIX = "SURROGATE_"
SETTINGS_FILE_ENV = "SURROGATE_SETTINGS_FILE"
DEFAULT_SETTINGS_FILE = "surrogate.toml"
DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
"""16 MiB: room for 10,000 designs written out in full (about 1.5 MB) with a wide margin."""
MASK = "****"


def _aliases(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class Settings(BaseSettings):
    """The resolved settings (see the module docstring for the sources and their order)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_ignore_empty=True,
        extra="forbid",
        validate_by_name=True,
        frozen=True,
    )

    tracking_uri: str = Field(
        DEFAULT_TRACKING_URI,
        validation_alias=_aliases("SURROGATE_TRACKING_URI", "MLFLOW_TRACKING_URI"),
        description="MLflow tracking URI: sqlite:///…, postgresql://… or the http://… of an `mlflow server`",
    )
    registry_uri: str | None = Field(
        None,
        validation_alias=_aliases("SURROGATE_REGISTRY_URI", "MLFLOW_REGISTRY_URI"),
        description="MLflow model registry URI (default: the tracking URI)",
    )
    tracking_username: str | None = Field(
        None,
        validation_alias=_aliases("MLFLOW_TRACKING_USERNAME"),
        description="user of an MLflow server with basic auth",
    )
    tracking_password: SecretStr | None = Field(
        None,
        validation_alias=_aliases("MLFLOW_TRACKING_PASSWORD"),
        description="password of an MLflow server with basic auth (secret)",
    )
    optuna_storage: str | None = Field(
        None, description="the campaign store: an Optuna storage URL (default: SQLite optuna.db under home)"
    )
    home: Path = Field(Path(".surrogate"), description="local state folder (the default campaign store)")
    lease_s: float | None = Field(
        None, gt=0, allow_inf_nan=False, description="lease of a suggestion, seconds (default 24 h)"
    )
    materials: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description=f"materials files every command declares ({os.pathsep!r}-separated)"
    )
    model_uri: str | None = Field(None, description="the MLflow model URI the service answers with (default @champion)")
    bento_model: str | None = Field(None, description="BentoML model tag of a built Bento")
    workers: int = Field(1, ge=1, le=64, description="service worker processes")
    access_log: bool = Field(False, description="BentoML's per-request access log")
    api_token: SecretStr | None = Field(None, description="bearer token of the campaign and search endpoints (secret)")
    admin_token: SecretStr | None = Field(
        None, description="bearer token of POST /admin/reload (secret; default: the API token)"
    )
    tokens_file: Path | None = Field(
        None,
        description="tokens of people and robots (hashed; `surrogate token add`); default <home>/tokens.toml if present",
    )
    tokens: list[dict[str, str]] = Field(
        default_factory=list,
        description="token entries in the settings file: [[tokens]] name, role (read|write|admin), sha256",
    )
    predict_public: bool = Field(
        True, description="/predict and /model_info answer without a token (false: a read token is needed)"
    )
    metrics_public: bool = Field(False, description="/metrics answers without the token")
    max_body_bytes: int = Field(DEFAULT_MAX_BODY_BYTES, gt=0, description="request body limit, bytes")
    request_timeout_s: float = Field(60.0, gt=0, le=3600, description="service answer timeout, seconds")
    model_retry_s: float = Field(10.0, ge=0, le=3600, description="seconds between loads while there is no model")
    ingest_max_files: int = Field(100, ge=1, le=10_000, description="raw files in one POST /ingest")
    ingest_max_file_bytes: int = Field(4 * 1024 * 1024, gt=0, description="one uploaded file of POST /ingest, bytes")
    ingest_max_total_bytes: int = Field(
        12 * 1024 * 1024, gt=0, description="all uploaded files of one POST /ingest, bytes (the body limit applies too)"
    )
    champion_poll_s: float = Field(
        30.0, ge=0, le=86400, description="seconds between registry checks for a new @champion (0: never)"
    )

    @field_validator("materials", mode="before")
    @classmethod
    def _split_paths(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(os.pathsep) if part.strip()]
        return value

    @field_validator("tracking_uri", "registry_uri", "optuna_storage", "model_uri", "bento_model", mode="after")
    @classmethod
    def _stripped(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not value:
            raise ValueError("must not be blank")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword arguments, then the environment, then the settings file (no .env, no secrets folder)."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = settings_file()
        if path is not None:
            sources.append(_Toml(settings_cls, toml_file=path))
        return tuple(sources)

    @property
    def resolved_registry_uri(self) -> str:
        """The registry URI in force: ``registry_uri``, else the tracking URI."""
        return self.registry_uri or self.tracking_uri

    @property
    def reload_token(self) -> str | None:
        """The token ``POST /admin/reload`` needs: ``admin_token``, else ``api_token``; None when neither is set."""
        token = self.admin_token or self.api_token
        return token.get_secret_value() if token is not None else None


# ---------------------------------------------------------------------- names, sources
def env_names(field: str) -> tuple[str, ...]:
    """The environment variables that set ``field`` (first wins), e.g. ``("SURROGATE_LEASE_S",)``."""
    alias = Settings.model_fields[field].validation_alias
    if isinstance(alias, AliasChoices):
        return tuple(str(choice) for choice in alias.choices if str(choice).isupper())
    return (f"{ENV_PREFIX}{field.upper()}",)


def _field_of(key: str) -> str | None:
    """The field a name from an error location refers to (a field name or one of its variables)."""
    if key in Settings.model_fields:
        return key
    for name in Settings.model_fields:
        if key.upper() in env_names(name):
            return name
    return None


def settings_file() -> Path | None:
    """The settings file in force: ``$SURROGATE_SETTINGS_FILE`` (must exist), else ``./surrogate.toml`` if present."""
    given = os.environ.get(SETTINGS_FILE_ENV, "").strip()
    if given:
        path = Path(given).expanduser()
        if not path.is_file():
            raise InputError(f"{SETTINGS_FILE_ENV}: no settings file at {path}")
        return path
    default = Path(DEFAULT_SETTINGS_FILE)
    return default if default.is_file() else None


def _file_values(path: Path | None) -> dict[str, Any]:
    """The keys of the settings file, read with a clear error for a file that is not TOML."""
    if path is None:
        return {}
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"settings file {path}: not valid TOML ({exc})") from None
    except OSError as exc:
        raise InputError(f"settings file {path}: cannot be read ({exc.strerror})") from None


def _describe(error: dict[str, Any], path: Path | None, file_keys: set[str]) -> str:
    key = str(error["loc"][0]) if error.get("loc") else "?"
    field = _field_of(key)
    if field is None:
        where = f"settings file {path}: unknown key {key!r}" if path else f"unknown setting {key!r}"
        known = ", ".join(Settings.model_fields)
        return f"{where} (known: {known})"
    present = [name for name in env_names(field) if os.environ.get(name)]
    if present:
        where = present[0]
    elif path is not None and (field in file_keys or key in file_keys):
        where = f"{field} in {path}"
    else:
        where = field
    value = error.get("input")
    shown = MASK if _is_secret(field) else repr(value)
    return f"{where}: {shown} {error['msg'].lower()}"


def _load() -> Settings:
    path = settings_file()
    file_keys = set(_file_values(path))
    try:
        return Settings()
    except ValidationError as exc:
        reasons = "; ".join(_describe(error, path, file_keys) for error in exc.errors())
        raise InputError(f"bad setting: {reasons}") from None


def _fingerprint() -> tuple[Any, ...]:
    """What the settings depend on: the project's variables, the settings file (path and mtime), the directory."""
    names = {name for field in Settings.model_fields for name in env_names(field)} | {SETTINGS_FILE_ENV}
    env = tuple(sorted((name, os.environ[name]) for name in names if name in os.environ))
    try:
        cwd = os.getcwd()
    except OSError:
        cwd = ""
    given = os.environ.get(SETTINGS_FILE_ENV, "").strip()
    candidate = Path(given).expanduser() if given else Path(DEFAULT_SETTINGS_FILE)
    try:
        stamp = candidate.stat().st_mtime_ns
    except OSError:
        stamp = None
    return env, cwd, str(candidate), stamp


@lru_cache(maxsize=8)
def _cached(fingerprint: tuple[Any, ...]) -> Settings:
    return _load()


def get_settings() -> Settings:
    """The settings in force, parsed once per distinct environment (see the module docstring).

    Raises :class:`InputError` naming the variable or file key of a bad value.
    """
    return _cached(_fingerprint())


def clear_cache() -> None:
    """Forget parsed settings (the next :func:`get_settings` reads the environment and the file again)."""
    _cached.cache_clear()


# ---------------------------------------------------------------------- printing, with secrets masked
def _is_secret(field: str) -> bool:
    return Settings.model_fields[field].annotation in (SecretStr, SecretStr | None)


def mask_url(url: str | None) -> str | None:
    """``url`` with the password of its user part replaced by ``****`` (``postgresql://me:****@host/db``)."""
    if url is None or "://" not in url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:{MASK}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


_URL_FIELDS = frozenset({"tracking_uri", "registry_uri", "optuna_storage", "model_uri"})


def source_of(field: str) -> str:
    """Where ``field``'s value comes from: ``env NAME``, ``file PATH`` or ``default``."""
    for name in env_names(field):
        if os.environ.get(name):  # an empty variable counts as unset
            return f"env {name}"
    path = settings_file()
    values = _file_values(path)
    if path is not None and (field in values or any(name in values for name in env_names(field))):
        return f"file {path}"
    return "default"


def masked(settings: Settings | None = None) -> dict[str, dict[str, Any]]:
    """Every setting as ``{field: {"value", "source", "env", "description"}}``; secrets and URL passwords masked."""
    settings = settings or get_settings()
    out: dict[str, dict[str, Any]] = {}
    for field, info in Settings.model_fields.items():
        value = getattr(settings, field)
        if isinstance(value, SecretStr):
            value = MASK
        elif field in _URL_FIELDS:
            value = mask_url(value)
        elif isinstance(value, Path):
            value = str(value)
        elif field == "tokens":  # digests are no secrets, but the names and roles are what a reader needs
            value = [{"name": entry.get("name"), "role": entry.get("role")} for entry in value]
        out[field] = {
            "value": value,
            "source": source_of(field),
            "env": list(env_names(field)),
            "description": info.description or "",
        }
    return out
