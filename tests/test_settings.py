"""The settings object (surrogate/settings.py): environment, settings file, precedence, masking, bad values.

Every test runs in its own empty folder with no settings file and none of the project's variables set, so the
defaults are what the code declares.
"""

from __future__ import annotations

import json
import os

import pytest

from surrogate.cli import main
from surrogate.errors import InputError
from surrogate.settings import DEFAULT_TRACKING_URI, Settings, env_names, get_settings, mask_url, masked


@pytest.fixture(autouse=True)
def clean_environment(tmp_path, monkeypatch):
    """No project variable set, no settings file, an empty working directory."""
    names = {name for field in Settings.model_fields for name in env_names(field)} | {"SURROGATE_SETTINGS_FILE"}
    for name in names:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_defaults_when_nothing_is_set():
    settings = get_settings()
    assert settings.tracking_uri == DEFAULT_TRACKING_URI
    assert settings.resolved_registry_uri == DEFAULT_TRACKING_URI
    assert settings.optuna_storage is None and settings.api_token is None and settings.lease_s is None
    assert settings.workers == 1 and settings.max_body_bytes == 16 * 1024 * 1024 and settings.materials == []
    assert all(entry["source"] == "default" for entry in masked().values())


def test_every_environment_variable_the_code_read_before_still_works(monkeypatch):
    values = {
        "MLFLOW_TRACKING_URI": "http://127.0.0.1:5999",
        "SURROGATE_OPTUNA_STORAGE": "postgresql://me@127.0.0.1:5432/campaigns",
        "SURROGATE_HOME": "state",
        "SURROGATE_LEASE_S": "7200",
        "SURROGATE_MATERIALS": os.pathsep.join(["a.yaml", "b.yaml"]),
        "SURROGATE_MODEL_URI": "models:/llto-surrogate/3",
        "SURROGATE_BENTO_MODEL": "llto-surrogate:abc",
        "SURROGATE_WORKERS": "2",
        "SURROGATE_ACCESS_LOG": "yes",
        "SURROGATE_API_TOKEN": "t0ken",
        "SURROGATE_METRICS_PUBLIC": "1",
        "SURROGATE_MAX_BODY_BYTES": "1000",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    settings = get_settings()
    assert settings.tracking_uri == "http://127.0.0.1:5999" == settings.resolved_registry_uri
    assert settings.optuna_storage == "postgresql://me@127.0.0.1:5432/campaigns"
    assert str(settings.home) == "state" and settings.lease_s == 7200 and settings.materials == ["a.yaml", "b.yaml"]
    assert settings.model_uri == "models:/llto-surrogate/3" and settings.bento_model == "llto-surrogate:abc"
    assert settings.workers == 2 and settings.access_log and settings.metrics_public
    assert settings.api_token.get_secret_value() == "t0ken" and settings.max_body_bytes == 1000
    sources = {name: entry["source"] for name, entry in masked().items()}
    assert sources["tracking_uri"] == "env MLFLOW_TRACKING_URI" and sources["lease_s"] == "env SURROGATE_LEASE_S"

    # and the code that used to read them reads the settings
    from serving.middleware import GuardMiddleware
    from surrogate import storage, tracking
    from surrogate.campaign import default_lease_s

    assert tracking.tracking_uri() == "http://127.0.0.1:5999" and tracking.ui_base() == "http://127.0.0.1:5999"
    assert storage.resolve_storage_url() == "postgresql://me@127.0.0.1:5432/campaigns"
    assert str(storage.surrogate_home()) == "state" and default_lease_s() == 7200
    guard = GuardMiddleware(app=None)
    assert guard.token == "t0ken" and guard.max_bytes == 1000 and guard.metrics_public


def test_settings_file_by_variable_and_in_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "team.toml").write_text(
        'tracking_uri = "http://mlflow.lab:5000"\noptuna_storage = "postgresql://lab@db/optuna"\n'
        'champion_poll_s = 5\nmaterials = ["lab.yaml"]\napi_token = "from-file"\n'
    )
    monkeypatch.setenv("SURROGATE_SETTINGS_FILE", str(tmp_path / "team.toml"))
    settings = get_settings()
    assert settings.tracking_uri == "http://mlflow.lab:5000" and settings.optuna_storage == "postgresql://lab@db/optuna"
    assert settings.champion_poll_s == 5 and settings.materials == ["lab.yaml"]
    assert settings.api_token.get_secret_value() == "from-file"
    assert masked()["tracking_uri"]["source"] == f"file {tmp_path / 'team.toml'}"

    monkeypatch.delenv("SURROGATE_SETTINGS_FILE")
    assert get_settings().tracking_uri == DEFAULT_TRACKING_URI  # no file any more: read again
    (tmp_path / "surrogate.toml").write_text('tracking_uri = "http://here:5000"\n')
    assert get_settings().tracking_uri == "http://here:5000"


def test_environment_beats_file_beats_default_and_a_flag_beats_both(tmp_path, monkeypatch):
    (tmp_path / "surrogate.toml").write_text('optuna_storage = "sqlite:///file.db"\nworkers = 3\n')
    assert get_settings().optuna_storage == "sqlite:///file.db" and get_settings().workers == 3
    monkeypatch.setenv("SURROGATE_OPTUNA_STORAGE", "sqlite:///env.db")
    settings = get_settings()
    assert settings.optuna_storage == "sqlite:///env.db" and settings.workers == 3  # the file still gives workers
    assert settings.max_body_bytes == 16 * 1024 * 1024  # neither: the default
    from surrogate.storage import resolve_storage_url

    assert resolve_storage_url("sqlite:///flag.db") == "sqlite:///flag.db"  # --storage wins over both
    assert resolve_storage_url() == "sqlite:///env.db"


def test_read_once_while_nothing_changes(monkeypatch):
    first = get_settings()
    assert get_settings() is first
    monkeypatch.setenv("SURROGATE_WORKERS", "2")
    assert get_settings() is not first and get_settings().workers == 2


def test_config_prints_every_setting_with_secrets_masked(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SURROGATE_API_TOKEN", "super-secret-token")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql://mlflow:db-password@127.0.0.1:5432/mlflow_team")
    (tmp_path / "surrogate.toml").write_text('admin_token = "admin-secret"\ntracking_password = "basic-pass"\n')
    assert main(["config", "--json"]) == 0
    out = capsys.readouterr().out
    for secret in ("super-secret-token", "db-password", "admin-secret", "basic-pass"):
        assert secret not in out
    document = json.loads(out)
    settings = document["settings"]
    assert set(settings) == set(Settings.model_fields)
    assert settings["api_token"] == {**settings["api_token"], "value": "****", "source": "env SURROGATE_API_TOKEN"}
    assert settings["admin_token"]["value"] == "****" and settings["admin_token"]["source"].startswith("file ")
    assert settings["tracking_uri"]["value"] == "postgresql://mlflow:****@127.0.0.1:5432/mlflow_team"
    assert document["settings_file"] == "surrogate.toml"

    assert main(["config"]) == 0
    text = capsys.readouterr().out
    assert "super-secret-token" not in text and "admin-secret" not in text
    assert "api_token" in text and "(env SURROGATE_API_TOKEN)" in text and "****" in text


def test_mask_url_hides_only_the_password():
    assert mask_url("postgresql://u:p@h:5432/db?x=1") == "postgresql://u:****@h:5432/db?x=1"
    assert mask_url("postgresql://u@h/db") == "postgresql://u@h/db"
    assert mask_url("sqlite:///a.db") == "sqlite:///a.db" and mask_url(None) is None


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("SURROGATE_LEASE_S", "soon", "valid number"),
        ("SURROGATE_LEASE_S", "-1", "greater than 0"),
        ("SURROGATE_LEASE_S", "nan", "finite number"),
        ("SURROGATE_WORKERS", "0", "greater than or equal to 1"),
        ("SURROGATE_MAX_BODY_BYTES", "lots", "valid integer"),
        ("SURROGATE_METRICS_PUBLIC", "perhaps", "valid boolean"),
        ("SURROGATE_CHAMPION_POLL_S", "-5", "greater than or equal to 0"),
        ("MLFLOW_TRACKING_URI", "   ", "blank"),
    ],
)
def test_bad_value_in_the_environment_is_exit_2_naming_the_variable(monkeypatch, capsys, name, value, reason):
    monkeypatch.setenv(name, value)
    with pytest.raises(InputError, match=name):
        get_settings()
    assert main(["config"]) == 2
    err = capsys.readouterr().err
    assert name in err and reason in err and "Traceback" not in err


def test_bad_value_in_the_file_names_the_key_and_the_file(tmp_path, capsys):
    (tmp_path / "surrogate.toml").write_text('workers = "many"\n')
    assert main(["config"]) == 2
    err = capsys.readouterr().err
    assert "workers in surrogate.toml" in err and "valid integer" in err
    (tmp_path / "surrogate.toml").write_text('tracking_url = "http://typo:5000"\n')
    assert main(["config"]) == 2
    assert "unknown key 'tracking_url'" in capsys.readouterr().err
    (tmp_path / "surrogate.toml").write_text("tracking_uri = http://not-quoted\n")
    assert main(["config"]) == 2
    assert "not valid TOML" in capsys.readouterr().err


def test_a_named_settings_file_must_exist(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SURROGATE_SETTINGS_FILE", str(tmp_path / "missing.toml"))
    assert main(["config"]) == 2
    assert "SURROGATE_SETTINGS_FILE: no settings file at" in capsys.readouterr().err


def test_a_bad_setting_stops_other_commands_with_exit_2_too(monkeypatch, capsys):
    monkeypatch.setenv("SURROGATE_LEASE_S", "soon")
    assert main(["campaign", "list", "--json"]) == 2
    assert "SURROGATE_LEASE_S" in capsys.readouterr().err


def test_basic_auth_credentials_from_the_file_reach_mlflow(tmp_path, monkeypatch):
    (tmp_path / "surrogate.toml").write_text(
        f'tracking_uri = "sqlite:///{tmp_path / "m.db"}"\ntracking_username = "robot-1"\ntracking_password = "pw"\n'
    )
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "")  # unset for the settings; restored after the test
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "")
    from surrogate import tracking

    tracking.configure_mlflow()
    assert os.environ["MLFLOW_TRACKING_USERNAME"] == "robot-1" and os.environ["MLFLOW_TRACKING_PASSWORD"] == "pw"
