"""Settings: embedded defaults, environment overrides, and refusing to run without a secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core.config import Settings
from app.corpus.relations import allowed_relations


@pytest.fixture(autouse=True)
def no_skd_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings as on a fresh machine (the test session itself exports SKD_ variables)."""
    import os

    for key in list(os.environ):
        if key.startswith("SKD_"):
            monkeypatch.delenv(key)


def test_embedded_defaults_need_no_servers(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, _env_file=None)
    assert settings.database == f"sqlite:///{tmp_path.resolve() / 'skd.sqlite'}"
    assert settings.broker.startswith("sqla+sqlite:///") and settings.broker.endswith(
        "broker.sqlite"
    )
    assert settings.results.startswith("db+sqlite:///")
    assert Path(settings.critic_base_model, "config.json").is_file()  # the packaged MiniLM


def test_environment_selects_postgres_and_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKD_DATABASE_URL", "postgresql+psycopg://u@db/skd")
    monkeypatch.setenv("SKD_BROKER_URL", "redis://cache:6379/0")
    monkeypatch.setenv("SKD_EXTRA_RELATIONS", "Foo, Bar")
    settings = Settings(_env_file=None)
    assert settings.database == "postgresql+psycopg://u@db/skd"
    assert settings.broker == "redis://cache:6379/0"
    assert {"Foo", "Bar", "xWant"} <= allowed_relations(settings)


def test_server_refuses_to_start_without_secret_outside_demo(tmp_path: Path) -> None:
    from app.main import create_app

    with pytest.raises(RuntimeError, match="SKD_SECRET_KEY"):
        create_app(Settings(data_dir=tmp_path, secret_key=None, demo=False, _env_file=None))
    demo = Settings(data_dir=tmp_path, secret_key=None, demo=True, _env_file=None)
    assert demo.session_secret()


def test_every_variable_docker_compose_passes_is_a_setting() -> None:
    """A misspelt SKD_ name in docker-compose.yml would be silently ignored by the app."""
    import re

    from tests.conftest import ROOT

    compose = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    passed = set(re.findall(r"^\s+(SKD_[A-Z0-9_]+):", compose, flags=re.MULTILINE))
    known = {f"SKD_{name.upper()}" for name in Settings.model_fields}
    assert len(passed) > 10 and passed <= known, sorted(passed - known)
    for name in re.findall(r"\b(SKD_[A-Z0-9_]+)\b", compose):  # the comments' names too
        assert name in known, name
