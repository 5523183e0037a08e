"""What staff read: models by name (never a local folder), the label snapshot as a sentence,
on the dataset card, the critic page and `skd critic list`."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import update

from app.core.config import packaged_minilm_path
from app.core.db import session_scope
from app.core.models import CriticVersion
from app.critic.describe import label_snapshot_sentence, model_display_name
from tests.conftest import login, make_staff
from tests.test_export import build_corpus, export

SNAPSHOT = {
    "max_rating_id": 5678,
    "labels": 1234,
    "acceptable": 812,
    "train": 987,
    "held_out": 247,
    "held_out_fraction": 0.2,
    "taken_at": "2026-12-01T21:03:11+00:00",
    "start": "warm",
}


def test_names_and_sentences() -> None:
    assert model_display_name(packaged_minilm_path()) == "all-MiniLM-L6-v2"
    assert model_display_name("roberta-large") == "roberta-large"
    assert model_display_name("/srv/models/critic-3") == "critic-3"
    assert label_snapshot_sentence(SNAPSHOT) == (
        "1,234 human labels (812 acceptable): 987 to train on and 247 held out (20% of "
        "events), ratings up to #5,678, taken 2026-12-01 21:03 UTC"
    )
    assert label_snapshot_sentence({}) == "no record of the labels it trained on"


def test_card_and_critic_page_name_the_model_and_say_the_labels(
    engine,
    client,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    corpus = build_corpus()
    folder = packaged_minilm_path()
    with session_scope(write=True) as session:
        session.execute(
            update(CriticVersion)
            .where(CriticVersion.id == corpus.version_id)
            .values(base_model=folder, label_snapshot=SNAPSHOT)
        )
    card = (export({"target_recall": 0.8}, tmp_path / "card") / "README.md").read_text()
    assert "| base model | all-MiniLM-L6-v2 |" in card
    assert folder not in card and "site-packages" not in card
    assert "| trained on | 1,234 human labels (812 acceptable): 987 to train on" in card
    assert "max_rating_id" not in card
    make_staff()
    login(client)
    page = client.get(f"/critic?version={corpus.version_id}").text
    assert ">all-MiniLM-L6-v2<" in page
    assert "trained on 1,234 human labels (812 acceptable)" in page
