"""``POST /ingest``: a manifest and the raw files it names, uploaded as ``multipart/form-data``, reduced to rows.

The form has one part ``manifest`` (a ``.yaml``, ``.yml`` or ``.csv`` file, :mod:`surrogate.ingest.manifest`) and
one part ``files`` per raw file. Each manifest ``file`` entry must be one of the uploaded file names, given as a
relative path without ``..`` (``film_25C.mpt`` or ``eis/film_25C.mpt``); anything else is a 400 naming the entry.
Limits (:mod:`surrogate.settings`): ``ingest_max_files`` files, ``ingest_max_file_bytes`` per file and
``ingest_max_total_bytes`` in all, each a 413 when exceeded (the service's body limit ``max_body_bytes`` applies
first). The files are saved to a temporary folder that is removed when the answer is made, and the ingest
(:func:`surrogate.ingest.pipeline.ingest`) runs in a worker thread. No MLflow run is logged (the CLI's
``surrogate data ingest`` does that); the answer is the reduced rows as JSON with their sources and warnings.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from http import HTTPStatus
from pathlib import Path, PurePosixPath
from typing import Any

import anyio
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from surrogate.errors import DataValidationError, Problem
from surrogate.ingest.manifest import FILE, listed_files
from surrogate.settings import get_settings

MANIFEST_PART = "manifest"
FILES_PART = "files"
MANIFEST_SUFFIXES = (".yaml", ".yml", ".csv")


class UploadError(Exception):
    """A refused upload: HTTP ``status``, a message, and the parts it concerns (``detail``)."""

    def __init__(self, status: int, message: str, detail: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail or []


def unsafe_name_reason(name: str) -> str | None:
    """Why ``name`` cannot be an uploaded file's name or a manifest ``file`` entry (None when it can).

    A name is a relative POSIX path inside the upload folder: not empty, not absolute, no ``..`` part,
    no backslash and no NUL.
    """
    if not name.strip():
        return "an empty name"
    if "\\" in name or "\0" in name:
        return "a backslash or NUL in the name; use '/' between folders"
    path = PurePosixPath(name)
    if path.is_absolute() or name.startswith("~"):
        return "an absolute path; give the name of an uploaded file"
    if ".." in path.parts:
        return "a '..' in the path; name an uploaded file, nothing outside the upload"
    return None


def normal_name(name: str) -> str:
    """A safe name in one spelling (``eis//a.mpt`` and ``./eis/a.mpt`` are ``eis/a.mpt``), to compare names."""
    return str(PurePosixPath(name.strip()))


def _refuse(status: int, message: str, loc: list[Any], msg: str) -> UploadError:
    return UploadError(status, message, [{"loc": loc, "msg": msg}])


async def read_upload(request: Request) -> tuple[UploadFile, list[UploadFile]]:
    """The manifest part and the file parts of the form, checked against the limits and for safe names."""
    settings = get_settings()
    try:
        form = await request.form(max_files=settings.ingest_max_files + 1, max_fields=10)
    except HTTPException as exc:  # Starlette's multipart parser: too many parts, or a malformed body
        status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE if "Too many files" in str(exc.detail) else exc.status_code
        raise _refuse(status, f"multipart body refused: {exc.detail}", ["body"], str(exc.detail)) from None
    manifest = form.get(MANIFEST_PART)
    if not isinstance(manifest, UploadFile) or not manifest.filename:
        raise _refuse(
            HTTPStatus.BAD_REQUEST,
            f"the form needs one file part {MANIFEST_PART!r} (the manifest, .yaml or .csv) and a part "
            f"{FILES_PART!r} per raw file",
            ["body", MANIFEST_PART],
            "missing, or not a file",
        )
    manifest_name = PurePosixPath(manifest.filename).name
    if PurePosixPath(manifest_name).suffix.lower() not in MANIFEST_SUFFIXES:
        raise _refuse(
            HTTPStatus.BAD_REQUEST,
            f"manifest {manifest_name!r}: a manifest is a .yaml, .yml or .csv file",
            ["body", MANIFEST_PART],
            "not a .yaml, .yml or .csv file name",
        )
    files = form.getlist(FILES_PART)
    if len(files) > settings.ingest_max_files:
        raise _refuse(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            f"{len(files)} files in one upload; the limit is {settings.ingest_max_files} (ingest_max_files)",
            ["body", FILES_PART],
            f"at most {settings.ingest_max_files} files",
        )
    total = manifest.size or 0
    seen: set[str] = {manifest_name}
    for part in files:
        if not isinstance(part, UploadFile) or not part.filename:
            raise _refuse(
                HTTPStatus.BAD_REQUEST, f"every {FILES_PART!r} part is a file", ["body", FILES_PART], "not a file"
            )
        name = part.filename
        reason = unsafe_name_reason(name)
        name = normal_name(name)
        if reason is not None:
            raise _refuse(
                HTTPStatus.BAD_REQUEST, f"uploaded file {name!r}: {reason}", ["body", FILES_PART, name], reason
            )
        if name in seen:
            raise _refuse(
                HTTPStatus.BAD_REQUEST,
                f"uploaded file {name!r}: sent twice",
                ["body", FILES_PART, name],
                "duplicate name",
            )
        seen.add(name)
        size = part.size or 0
        if size > settings.ingest_max_file_bytes:
            raise _refuse(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"uploaded file {name!r}: {size} bytes; the limit per file is {settings.ingest_max_file_bytes} "
                "(ingest_max_file_bytes)",
                ["body", FILES_PART, name],
                f"larger than {settings.ingest_max_file_bytes} bytes",
            )
        total += size
    if total > settings.ingest_max_total_bytes:
        raise _refuse(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            f"{total} bytes uploaded; the limit is {settings.ingest_max_total_bytes} in all (ingest_max_total_bytes)",
            ["body"],
            f"larger than {settings.ingest_max_total_bytes} bytes in all",
        )
    return manifest, files


def check_listed_files(manifest_path: Path, uploaded: set[str]) -> None:
    """Raise :class:`DataValidationError` (entry, ``file``, reason) for every entry that names no uploaded file."""
    problems = []
    for row, value in listed_files(manifest_path):
        if value is None:
            continue  # load_manifest names the missing field
        name = str(value).strip()
        reason = unsafe_name_reason(name)
        if reason is None and normal_name(name) not in uploaded:
            reason = f"not among the uploaded files ({', '.join(sorted(uploaded)) or 'none'})"
        if reason is not None:
            problems.append(Problem(row, FILE, f"{name}: {reason}"))
    if problems:
        raise DataValidationError(problems, manifest_path.name)


def ingest_uploaded(manifest: UploadFile, files: list[UploadFile]) -> dict[str, Any]:
    """Save the parts to a temporary folder, vet the manifest's names, ingest, and remove the folder (blocking)."""
    from surrogate.ingest.pipeline import ingest

    folder = Path(tempfile.mkdtemp(prefix="surrogate-ingest-"))
    try:
        manifest_path = folder / PurePosixPath(manifest.filename or "manifest.yaml").name
        _save(manifest, manifest_path)
        for part in files:
            name = normal_name(part.filename or "")
            try:
                (folder / name).parent.mkdir(parents=True, exist_ok=True)
                _save(part, folder / name)
            except OSError:  # "a" and "a/b", or a name that is a folder ("eis/."): not two files side by side
                raise _refuse(
                    HTTPStatus.BAD_REQUEST,
                    f"uploaded file {name!r}: cannot be saved beside the other files (a file and a folder of one name?)",
                    ["body", FILES_PART, name],
                    "not a file name",
                ) from None
        check_listed_files(manifest_path, {normal_name(part.filename or "") for part in files})
        result = ingest(manifest_path)
        return {
            "rows": json.loads(result.rows.to_json(orient="records", double_precision=15)),
            "sources": result.sources,
            "warnings": result.warnings,
            "created_at": result.created_at,
            "tracked": False,
        }
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _save(part: UploadFile, target: Path) -> None:
    part.file.seek(0)
    with target.open("wb") as out:
        shutil.copyfileobj(part.file, out)


async def ingest_endpoint(request: Request) -> JSONResponse:
    """``POST /ingest`` (module docstring); errors as everywhere in the service (``{"error", "detail"}``)."""
    from serving.service import error_answer

    try:
        manifest, files = await read_upload(request)
        document = await anyio.to_thread.run_sync(ingest_uploaded, manifest, files)
    except UploadError as exc:
        return JSONResponse({"error": str(exc), "detail": exc.detail}, status_code=exc.status)
    except Exception as exc:  # DataValidationError / InputError → 400; anything else a logged 500
        return error_answer(exc)
    return JSONResponse(document)
