"""Group access (serving/auth.py, serving/middleware.py, ``surrogate token``): hashed tokens with roles, issue 18.

The middleware is tested in front of a small Starlette app whose endpoints report who called
(``serving.auth.principal``), so every role and status is checked without loading a model.
"""

from __future__ import annotations

import hashlib
import hmac
import json

import anyio
import anyio.to_thread
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from serving import auth
from surrogate.cli import main
from surrogate.settings import Settings, env_names


@pytest.fixture(autouse=True)
def clean_environment(tmp_path, monkeypatch):
    """No project variable set, no settings file, an empty working directory."""
    names = {name for field in Settings.model_fields for name in env_names(field)} | {"SURROGATE_SETTINGS_FILE"}
    for name in names:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


async def _who(request: Request) -> JSONResponse:
    """Who sent the request: from the request's state, and from the context variable inside a worker thread
    (the way a BentoML sync API method runs: ``anyio.to_thread.run_sync``)."""
    in_thread = await anyio.to_thread.run_sync(auth.principal)
    return JSONResponse({"principal": auth.principal(request), "in_thread": in_thread, "path": request.url.path})


PATHS = ["/predict", "/model_info", "/suggest", "/observe", "/campaigns", "/campaigns/films", "/search"]
PATHS += ["/admin/reload", "/metrics", "/healthz", "/ingest"]


def _client(**guard) -> TestClient:
    from serving.middleware import GuardMiddleware

    routes = [Route(path, _who, methods=["GET", "POST"]) for path in PATHS]
    return TestClient(GuardMiddleware(Starlette(routes=routes), **guard))


def _add(name: str, role: str) -> str:
    return auth.add_token(auth.tokens_path(Settings()), name, role)


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_token_add_prints_the_token_once_and_stores_only_its_digest(tmp_path, capsys):
    assert main(["token", "add", "robot-1", "--role", "write"]) == 0
    out, err = capsys.readouterr()
    token = out.strip()
    assert token.startswith("sgt_") and len(token) > 40 and "only time it is shown" in err
    stored = (tmp_path / ".surrogate" / "tokens.toml").read_text()
    assert token not in stored and hashlib.sha256(token.encode()).hexdigest() in stored
    assert (tmp_path / ".surrogate" / "tokens.toml").stat().st_mode & 0o077 == 0  # readable by its owner only

    assert main(["token", "add", "alice", "--role", "read", "--json"]) == 0
    added = json.loads(capsys.readouterr().out)
    assert added["name"] == "alice" and added["role"] == "read" and added["token"].startswith("sgt_")
    assert main(["token", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["tokens"]
    assert [(row["name"], row["role"]) for row in listed] == [("robot-1", "write"), ("alice", "read")]
    assert main(["token", "list"]) == 0
    text = capsys.readouterr().out
    assert "robot-1" in text and "alice" in text and token not in text and added["token"] not in text
    assert "created" in (tmp_path / ".surrogate" / "tokens.toml").read_text()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["token", "add", "bad name"], "name 'bad name'"),
        (["token", "add", "x", "--role", "root"], "invalid choice: 'root'"),
    ],
)
def test_token_add_refuses_a_bad_name_or_role_with_exit_2(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_a_second_token_for_the_same_name_is_refused(capsys):
    _add("alice", "read")
    assert main(["token", "add", "alice", "--role", "admin"]) == 2
    assert "already has a token" in capsys.readouterr().err


def test_a_bad_tokens_file_names_the_file_and_the_entry(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "tokens.toml"
    bad.write_text('[[token]]\nname = "alice"\nrole = "read"\nsha256 = "plain-text-token"\n')
    monkeypatch.setenv("SURROGATE_TOKENS_FILE", str(bad))
    assert main(["token", "list"]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "entry 1" in err and "sha256 must be the 64 hex digits" in err
    # the service fails closed: guarded paths answer 503 naming the problem, open paths still answer
    client = _client()
    answer = client.post("/observe", json={})
    assert answer.status_code == 503 and "entry 1" in answer.json()["error"]
    assert client.get("/healthz").status_code == 200


def test_roles_read_write_admin_and_the_callers_name(monkeypatch):
    tokens = {role: _add(f"{role}-holder", role) for role in auth.ROLES}
    client = _client(predict_public=False)

    # read: predict, model information, status, search, metrics
    for method, path in [("POST", "/predict"), ("GET", "/model_info"), ("GET", "/campaigns")]:
        answer = client.request(method, path, headers=_bearer(tokens["read"]), json={} if method == "POST" else None)
        assert answer.status_code == 200, (path, answer.text)
        assert answer.json()["principal"] == "read-holder" == answer.json()["in_thread"]
    for path in ("/campaigns/films", "/metrics"):
        assert client.get(path, headers=_bearer(tokens["read"])).status_code == 200
    # a read token cannot write: 403 naming the role needed and the token's own
    for path in ("/suggest", "/observe", "/campaigns", "/ingest"):
        answer = client.post(path, headers=_bearer(tokens["read"]), json={})
        assert answer.status_code == 403, path
        assert (
            "needs role 'write'" in answer.json()["error"] and "'read-holder' has role 'read'" in answer.json()["error"]
        )
    # write: suggest, observe, create; not reload
    for path in ("/suggest", "/observe", "/campaigns"):
        answer = client.post(path, headers=_bearer(tokens["write"]), json={})
        assert answer.status_code == 200 and answer.json()["principal"] == "write-holder"
    answer = client.post("/admin/reload", headers=_bearer(tokens["write"]), json={})
    assert answer.status_code == 403 and "needs role 'admin'" in answer.json()["error"]
    # admin: everything
    for path in ("/admin/reload", "/observe", "/predict"):
        answer = client.post(path, headers=_bearer(tokens["admin"]), json={})
        assert answer.status_code == 200 and answer.json()["principal"] == "admin-holder"


@pytest.mark.parametrize(
    "header",
    [None, "Bearer wrong", "Bearer ", "Token {token}", "Bearer ✓é", "bearer {token}x"],
    ids=["none", "wrong", "empty", "other scheme", "non-ASCII", "one character more"],
)
def test_a_missing_or_wrong_token_is_401(header):
    token = _add("robot-1", "write")
    client = _client()
    headers = {} if header is None else {"authorization": header.format(token=token).encode()}
    answer = client.post("/observe", headers=headers, json={})
    assert answer.status_code == 401 and answer.headers["www-authenticate"].startswith("Bearer")
    assert "role 'write'" in answer.json()["error"]
    assert client.post("/observe", headers=_bearer(token), json={}).status_code == 200  # the right one passes


def test_a_wrong_token_does_the_same_work_as_a_right_one(monkeypatch):
    """One SHA-256, then one constant-time comparison per entry, with no early exit, for a right or a wrong token."""
    tokens = [_add(f"robot-{i}", "write") for i in range(5)]
    entries = auth.token_entries(Settings())
    calls: list[int] = []
    compare = hmac.compare_digest

    def counting(a, b):
        calls.append(len(a) + len(b))
        return compare(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    work = {}
    for label, given in [("first", tokens[0]), ("last", tokens[-1]), ("wrong", "sgt_" + "x" * 43), ("short", "x")]:
        calls.clear()
        found = auth.find_principal(entries, given.encode())
        work[label] = list(calls)
        assert (found is not None) == (label in ("first", "last"))
    assert work["first"] == work["last"] == work["wrong"] == work["short"] == [128] * 5


def test_open_paths_stay_open_and_name_a_valid_caller():
    token = _add("alice", "read")
    client = _client()  # predict_public defaults to true
    assert client.post("/predict", json={}).json()["principal"] is None
    assert client.post("/predict", headers=_bearer(token), json={}).json()["principal"] == "alice"
    assert client.get("/healthz").status_code == 200
    assert client.get("/metrics").status_code == 401  # not public by default


def test_the_single_api_token_keeps_working_as_an_admin_token(monkeypatch):
    monkeypatch.setenv("SURROGATE_API_TOKEN", "legacy-token")
    client = _client()
    for path in ("/observe", "/admin/reload", "/campaigns"):
        answer = client.post(path, headers=_bearer("legacy-token"), json={})
        assert answer.status_code == 200 and answer.json()["principal"] == "api_token"
    assert client.post("/observe", headers=_bearer("other"), json={}).status_code == 401
    # with a separate admin token, the API token writes and the admin token reloads (as before)
    monkeypatch.setenv("SURROGATE_ADMIN_TOKEN", "admin-token")
    client = _client()
    assert client.post("/observe", headers=_bearer("legacy-token"), json={}).status_code == 200
    assert client.post("/admin/reload", headers=_bearer("legacy-token"), json={}).status_code == 403
    answer = client.post("/admin/reload", headers=_bearer("admin-token"), json={})
    assert answer.status_code == 200 and answer.json()["principal"] == "admin_token"


def test_tokens_declared_in_the_settings_file(tmp_path):
    token = auth.new_token()
    (tmp_path / "surrogate.toml").write_text(
        f'[[tokens]]\nname = "robot-2"\nrole = "write"\nsha256 = "{auth.digest(token)}"\n'
    )
    client = _client()
    assert client.post("/suggest", headers=_bearer(token), json={}).json()["principal"] == "robot-2"
    assert main(["config", "--json"]) == 0


def test_the_config_shows_token_names_and_roles_not_digests(tmp_path, capsys):
    digest = auth.digest(auth.new_token())
    (tmp_path / "surrogate.toml").write_text(f'[[tokens]]\nname = "robot-2"\nrole = "write"\nsha256 = "{digest}"\n')
    assert main(["config", "--json"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out)["settings"]["tokens"]["value"] == [{"name": "robot-2", "role": "write"}]
    assert digest not in out


def test_the_same_token_under_two_names_is_refused(tmp_path, capsys):
    digest = auth.digest(auth.new_token())
    entries = "".join(f'[[tokens]]\nname = "{name}"\nrole = "read"\nsha256 = "{digest}"\n' for name in ("a", "b"))
    (tmp_path / "surrogate.toml").write_text(entries)
    assert main(["token", "list"]) == 2
    assert "are the same token" in capsys.readouterr().err


def test_required_role_of_every_endpoint():
    def role(method: str, path: str, **flags) -> str | None:
        return auth.required_role(method, path, **({"metrics_public": False, "predict_public": True} | flags))

    assert role("POST", "/predict") is None and role("POST", "/predict", predict_public=False) == "read"
    assert role("GET", "/campaigns") == role("GET", "/campaigns/films") == role("POST", "/search") == "read"
    assert role("POST", "/campaigns") == role("POST", "/suggest") == role("POST", "/observe") == "write"
    assert role("POST", "/admin/reload") == "admin" and role("GET", "/metrics") == "read"
    assert role("GET", "/metrics", metrics_public=True) is None and role("GET", "/readyz") is None
