"""Model and export folders follow the data dir: stored relative to it, found again after a
move or a restore from a machine whose data dir was elsewhere (app.core.models.DataPath,
app.core.data_paths). Before, every path was absolute: production's backup restored on a
laptop pointed the critic, the students and the exports at `/data/...`, which was not there.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from app.core.data_paths import inside_data_dir, relocate
from app.core.db import session_scope
from app.core.models import CriticState, CriticVersion, StudentModel, StudentState


def _raw(table: str, row_id: int) -> str:
    with session_scope() as session:
        return str(session.execute(text(f"SELECT path FROM {table} WHERE id = {row_id}")).scalar())


def _version(path: str) -> int:
    with session_scope(write=True) as session:
        version = CriticVersion(base_model="m", state=CriticState.ready, path=path)
        session.add(version)
        session.flush()
        return version.id


def test_a_folder_in_the_data_dir_is_stored_relative_and_read_back_where_the_dir_is(
    engine, settings, tmp_path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    root = Path(settings.data_dir).resolve()
    inside = _version(str(root / "models" / "critic-9"))
    outside = _version(str(tmp_path / "elsewhere" / "my-critic"))
    assert _raw("critic_versions", inside) == "models/critic-9"
    assert _raw("critic_versions", outside) == str(tmp_path / "elsewhere" / "my-critic")
    with session_scope() as session:
        assert session.get(CriticVersion, inside).path == str(root / "models" / "critic-9")

    # The data dir moved (or this is another machine reading the same database): the
    # relative path follows it; the one outside stays where it was.
    moved = tmp_path / "moved-data"
    monkeypatch.setattr(settings, "data_dir", moved)
    with session_scope() as session:
        assert session.get(CriticVersion, inside).path == str(moved.resolve() / "models/critic-9")
        assert session.get(CriticVersion, outside).path == str(tmp_path / "elsewhere/my-critic")


def test_the_part_under_models_or_exports_is_what_is_looked_for(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert inside_data_dir("/data/models/critic-3", tmp_path) == tmp_path / "models/critic-3"
    assert inside_data_dir("/srv/x/exports/0001-kg", tmp_path) == tmp_path / "exports/0001-kg"
    assert inside_data_dir("/home/me/models/exports", tmp_path) == tmp_path / "models/exports"
    assert inside_data_dir("/opt/roberta-large", tmp_path) is None


def test_paths_from_another_data_dir_are_pointed_here_when_the_folders_came_too(
    engine, settings, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """What a restore (and `skd db upgrade`) does with a copy from elsewhere: folders that
    were copied into this data dir are pointed at; the others are named as missing."""
    root = Path(settings.data_dir).resolve()
    # (names no other test's models take: the data dir is the whole session's)
    (root / "models" / "critic-x3").mkdir(parents=True)
    (root / "models" / "student-x2").mkdir(parents=True)
    here_already = tmp_path / "a-local-model"
    here_already.mkdir()
    (root / "models" / "critic-x1").mkdir(
        parents=True, exist_ok=True
    )  # written here, before DataPath
    with session_scope(write=True) as session:  # as production wrote them, before DataPath
        ids = {}
        for name, path in (
            ("copied", "/data/models/critic-x3"),
            ("not copied", "/data/models/critic-x4"),
            ("local", str(here_already)),
            ("old here", str(root / "models" / "critic-x1")),
        ):
            version = CriticVersion(base_model="m", state=CriticState.ready)
            session.add(version)
            session.flush()
            ids[name] = version.id
            session.execute(
                text("UPDATE critic_versions SET path = :p WHERE id = :i"),
                {"p": path, "i": version.id},
            )
        student = StudentModel(base_model="s", state=StudentState.ready)
        session.add(student)
        session.flush()
        session.execute(
            text("UPDATE student_models SET path = '/data/models/student-x2' WHERE id = :i"),
            {"i": student.id},
        )
        gone = StudentModel(base_model="s", state=StudentState.ready)
        session.add(gone)
        session.flush()
        gone_id = gone.id  # kept relative, but its folder was never copied here
        session.execute(
            text("UPDATE student_models SET path = 'models/student-x5' WHERE id = :i"),
            {"i": gone_id},
        )

    found = relocate(settings)

    assert sorted(found.moved) == sorted(
        [f"critic v{ids['copied']}: models/critic-x3", f"student #{student.id}: models/student-x2"]
    )
    assert found.missing == [
        f"critic v{ids['not copied']}: /data/models/critic-x4",
        f"student #{gone_id}: {root / 'models/student-x5'}",
    ]
    assert _raw("critic_versions", ids["copied"]) == "models/critic-x3"
    assert _raw("critic_versions", ids["not copied"]) == "/data/models/critic-x4"  # untouched
    assert _raw("critic_versions", ids["local"]) == str(here_already)  # outside: left alone
    assert _raw("critic_versions", ids["old here"]) == "models/critic-x1"  # follows the dir now
    with session_scope() as session:
        assert session.get(CriticVersion, ids["copied"]).path == str(root / "models/critic-x3")
    assert relocate(settings).moved == []  # once is enough
