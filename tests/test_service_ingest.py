"""POST /ingest: a manifest and its raw files uploaded as multipart, reduced to rows (issue 16)."""

from __future__ import annotations

import hashlib
import tempfile
import warnings
from pathlib import Path

import pytest
import yaml
from ingest_bad_inputs import CASES, bad_inputs, fail_every_fit

from surrogate.errors import InputError
from surrogate.ingest.pipeline import ingest
from surrogate.lab_raw import write_raw_lab

TOKEN = "s3cret-token"  # as tests/test_service.py: one app per process (conftest.surrogate_asgi_app) reads it once
AUTH = {"authorization": f"Bearer {TOKEN}"}
MAX_FILE_BYTES = 200_000
RATE_FILE = "cycling/rate-sio2_timeseries.csv"


def _no_model(*_args):
    raise InputError("no model in this test: /ingest needs none")


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from conftest import surrogate_asgi_app
    from starlette.testclient import TestClient

    import serving.service as service

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENTOML_HOME", str(tmp_path_factory.mktemp("bentoml")))
        mp.setenv("SURROGATE_HOME", str(tmp_path_factory.mktemp("home")))
        mp.setenv("SURROGATE_API_TOKEN", TOKEN)
        mp.setenv("SURROGATE_INGEST_MAX_FILE_BYTES", str(MAX_FILE_BYTES))
        mp.setenv("SURROGATE_MAX_BODY_BYTES", "4000000")  # as tests/test_service.py, for the same reason
        mp.setattr(service, "load_surrogate", _no_model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            test_client = TestClient(surrogate_asgi_app(), raise_server_exceptions=False)
        with test_client:
            yield test_client


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Path:
    """The virtual lab's raw files of one rate test, and their manifest (``cycling/...`` names)."""
    return write_raw_lab(tmp_path_factory.mktemp("raw"), samples=["rate-sio2"])


@pytest.fixture
def upload_folders(monkeypatch) -> list[Path]:
    """Every temporary folder the endpoint makes (to check it is gone afterwards)."""
    made: list[Path] = []
    real = tempfile.mkdtemp

    def recording(*args, **kwargs):
        made.append(Path(real(*args, **kwargs)))
        return str(made[-1])

    monkeypatch.setattr(tempfile, "mkdtemp", recording)
    return made


def _manifest(entries: list[dict], defaults: dict | None = None) -> bytes:
    return yaml.safe_dump({"defaults": defaults or {}, "files": entries}, sort_keys=False).encode()


def _post(client, manifest: bytes, files: dict[str, bytes], name: str = "manifest.yaml", headers=AUTH):
    parts = [("manifest", (name, manifest, "application/yaml"))]
    parts += [("files", (file_name, content, "application/octet-stream")) for file_name, content in files.items()]
    return client.post("/ingest", files=parts, headers=headers)


def _problems(response) -> list[dict]:
    body = response.json()
    assert set(body) >= {"error", "detail"}
    return body["detail"]


# ------------------------------------------------------------------ success
def test_upload_returns_the_rows_the_cli_makes_and_removes_its_folder(client, lab, upload_folders):
    content = (lab.parent / RATE_FILE).read_bytes()
    response = _post(client, lab.read_bytes(), {RATE_FILE: content})

    assert response.status_code == 200, response.text
    body = response.json()
    expected = ingest(lab).rows
    assert len(body["rows"]) == len(expected) > 0
    assert [row["rate_retention"] for row in body["rows"]] == pytest.approx(list(expected["rate_retention"]))
    assert [row["c_rate"] for row in body["rows"]] == list(expected["c_rate"])
    assert {row["sample_id"] for row in body["rows"]} == {"rate-sio2"}
    assert {row["source_file"] for row in body["rows"]} == {RATE_FILE}
    assert {row["source_sha256"] for row in body["rows"]} == {hashlib.sha256(content).hexdigest()}
    assert body["sources"] == [
        {
            "file": RATE_FILE,
            "sha256": hashlib.sha256(content).hexdigest(),
            "format": "battery_archive",
            "experiment": "rate",
        }
    ]
    assert body["tracked"] is False
    assert len(upload_folders) == 1 and not upload_folders[0].exists()


def test_upload_needs_the_bearer_token(client, lab):
    response = _post(client, lab.read_bytes(), {RATE_FILE: b"x"}, headers={})
    assert response.status_code == 401
    assert "authorization" in _problems(response)[0]["loc"]


def test_a_json_body_or_a_missing_manifest_is_a_400_naming_the_part(client):
    response = client.post("/ingest", json={"manifest": "m.yaml"}, headers=AUTH)
    assert response.status_code == 400
    assert _problems(response)[0]["loc"] == ["body", "manifest"]


# ------------------------------------------------------------------ names
def test_an_entry_naming_a_file_not_uploaded_is_a_400_naming_the_entry(client, lab, upload_folders):
    manifest = yaml.safe_load(lab.read_text())
    manifest["files"].append({**manifest["files"][0], "file": "cycling/other.csv", "sample_id": "other"})
    content = (lab.parent / RATE_FILE).read_bytes()
    response = _post(client, yaml.safe_dump(manifest).encode(), {RATE_FILE: content})

    assert response.status_code == 400
    (problem,) = _problems(response)
    assert problem["row"] == 2 and problem["column"] == "file"
    assert problem["reason"].startswith("cycling/other.csv: not among the uploaded files")
    assert RATE_FILE in problem["reason"]
    assert upload_folders and not any(folder.exists() for folder in upload_folders)


@pytest.mark.parametrize("entry", ["../rate.csv", "cycling/../../rate.csv", "/etc/passwd"])
def test_a_path_outside_the_upload_is_a_400_naming_the_entry(client, lab, entry):
    manifest = yaml.safe_load(lab.read_text())
    manifest["files"][0]["file"] = entry
    response = _post(client, yaml.safe_dump(manifest).encode(), {RATE_FILE: (lab.parent / RATE_FILE).read_bytes()})

    assert response.status_code == 400
    (problem,) = _problems(response)
    assert problem["row"] == 1 and problem["column"] == "file"
    assert problem["reason"].startswith(f"{entry}: ")
    assert "'..'" in problem["reason"] or "absolute" in problem["reason"]


def test_an_uploaded_file_name_with_dot_dot_is_refused(client, lab):
    response = _post(client, lab.read_bytes(), {"../rate.csv": b"x"})
    assert response.status_code == 400
    assert _problems(response)[0]["loc"] == ["body", "files", "../rate.csv"]


# ------------------------------------------------------------------ limits
def test_a_file_over_the_per_file_limit_is_a_413_naming_it(client, lab):
    response = _post(client, lab.read_bytes(), {RATE_FILE: b"0" * (MAX_FILE_BYTES + 1)})
    assert response.status_code == 413
    assert _problems(response)[0]["loc"] == ["body", "files", RATE_FILE]
    assert "ingest_max_file_bytes" in response.json()["error"]


def test_uploads_over_the_total_or_the_file_count_limit_are_413(client, lab, monkeypatch):
    monkeypatch.setenv("SURROGATE_INGEST_MAX_TOTAL_BYTES", "1000")
    response = _post(client, lab.read_bytes(), {"a.csv": b"0" * 600, "b.csv": b"0" * 600})
    assert response.status_code == 413
    assert "ingest_max_total_bytes" in response.json()["error"]

    monkeypatch.delenv("SURROGATE_INGEST_MAX_TOTAL_BYTES")
    monkeypatch.setenv("SURROGATE_INGEST_MAX_FILES", "2")
    response = _post(client, lab.read_bytes(), {f"{n}.csv": b"0" for n in range(3)})
    assert response.status_code == 413
    assert "files" in response.json()["error"].lower()

    response = _post(client, lab.read_bytes(), {RATE_FILE: (lab.parent / RATE_FILE).read_bytes()})
    assert response.status_code == 200  # within the limits again


# ------------------------------------------------------------------ bad data
def test_a_bad_spectrum_is_a_400_naming_the_file_and_the_entry(client, lab):
    film = {
        "file": "film_25C.mpt",
        "experiment": "conductivity",
        "sample_id": "film",
        "buffer": "none",
        "anneal_temp_c": 300,
        "test_temp_c": 25,
        "thickness_nm": 350,
        "diameter_mm": 3.5,
    }
    rate = yaml.safe_load(lab.read_text())["files"][0]
    manifest = _manifest([rate, film])
    files = {RATE_FILE: (lab.parent / RATE_FILE).read_bytes(), "film_25C.mpt": b"EC-Lab ASCII FILE\nnot a spectrum\n"}
    response = _post(client, manifest, files)

    assert response.status_code == 400
    body = response.json()
    assert body["error"].startswith("manifest.yaml: ")
    (problem,) = body["detail"]
    assert problem["row"] == 2 and problem["column"] == "file"
    assert problem["reason"].startswith("film_25C.mpt: ") and "EC-Lab" in problem["reason"]


def test_a_file_and_a_folder_of_one_name_are_a_400_not_a_500(client, lab, upload_folders):
    response = _post(client, lab.read_bytes(), {"cycling": b"x", RATE_FILE: b"y"})
    assert response.status_code == 400
    assert _problems(response)[0]["loc"] == ["body", "files", RATE_FILE]
    assert not any(folder.exists() for folder in upload_folders)


@pytest.mark.parametrize("name", CASES)
def test_each_bad_input_of_the_issue_is_a_400_naming_entry_file_and_reason(
    client, lab, upload_folders, name, monkeypatch
):
    case = bad_inputs((lab.parent / RATE_FILE).read_bytes())[name]
    if case.no_fit:
        import surrogate.ingest.eis as eis

        monkeypatch.setattr(eis, "least_squares", fail_every_fit)
    response = _post(client, _manifest([case.entry]), case.files)

    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith("manifest.yaml: ")
    problem = next(p for p in _problems(response) if p["column"] == case.column)
    assert problem["row"] == 1
    for part in case.reason_parts:
        assert part in problem["reason"], (part, problem["reason"])
    assert upload_folders and not any(folder.exists() for folder in upload_folders)
