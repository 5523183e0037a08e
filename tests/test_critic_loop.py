"""The critic loop end to end with a real Celery worker: ratings → train → evaluate →
activate → score → filter, plus the training lock, the retrain trigger and the fault cases.

Models are a tiny BERT built from a config (``tiny_base``), so a training takes seconds.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.annotation.access import admit
from app.annotation.assign import next_item, submit_rating
from app.annotation.campaigns import CampaignSpec, create_campaign
from app.core.db import session_scope
from app.core.models import (
    CampaignItem,
    CampaignPurpose,
    CriticState,
    CriticVersion,
    Job,
    JobState,
    Rating,
    RatingOrigin,
    Role,
    Score,
    Triple,
    User,
)
from app.critic import evaluation, loop, scoring_jobs
from app.critic.filtering import choose_threshold, preview
from app.critic.labels import training_labels
from app.critic.registry import active_version
from tests.conftest import add_triples
from tests.critic_helpers import critic_settings, labelled_corpus, wait_for_jobs


def annotator(name: str) -> int:
    with session_scope(write=True) as session:
        user = User(role=Role.annotator, platform="prolific", external_id=f"{name}-{uuid.uuid4()}")
        session.add(user)
        session.flush()
        return user.id


def rate_campaign(campaign_id: int, annotator_id: int, answer_of: dict[int, int]) -> int:
    """Rate every item the annotator is served with ``answer_of[triple id]``; returns count."""
    done = 0
    while True:
        with session_scope(write=True) as session:
            admit(session, campaign_id, annotator_id, "link")  # entered by its link
            served = next_item(session, campaign_id, annotator_id)
            if served is None:
                return done
            triple_id = session.get(CampaignItem, served.item_id).triple_id
            submit_rating(
                session,
                campaign_id,
                annotator_id,
                served.item_id,
                answer_of[triple_id],
                uuid.uuid4().hex,
                3.0,
            )
            done += 1


def calibration_campaign(n: int = 40) -> tuple[int, dict[int, bool]]:
    """A calibration campaign over ``n`` fresh learnable triples, rated once each."""
    truth = labelled_corpus(
        n_heads=n // 2, per_head=2, seed=11, first_head=500, source="calibration"
    )
    with session_scope(write=True) as session:
        # Drop their imported labels: these triples are known only through the campaign.
        for rating in session.scalars(select(Rating).where(Rating.triple_id.in_(list(truth)))):
            session.delete(rating)
        campaign = create_campaign(
            session,
            CampaignSpec(
                name="calibration",
                purpose=CampaignPurpose.calibration,
                ratings_per_item=1,
                sources=["calibration"],
            ),
        )
        campaign_id = campaign.id
    rate_campaign(campaign_id, annotator("cal"), {t: 2 if ok else -2 for t, ok in truth.items()})
    return campaign_id, truth


def test_training_labels_leave_out_gold_items_and_excluded_annotators(engine) -> None:  # type: ignore[no-untyped-def]
    ids = add_triples(4, head="PersonX bakes {i}", tail="to eat {i}")
    with session_scope(write=True) as session:
        campaign = create_campaign(
            session, CampaignSpec(name="c", ratings_per_item=1, gold_items={ids[3]: 2})
        )
        campaign_id = campaign.id
    good, bad = annotator("good"), annotator("bad")
    answers = {ids[0]: 2, ids[1]: -2, ids[2]: 2, ids[3]: 2}
    rate_campaign(campaign_id, good, answers)
    with session_scope(write=True) as session:
        session.get(User, good).excluded = True
    rate_campaign(campaign_id, bad, {**answers, ids[3]: -2})
    with session_scope() as session:
        labels = {label.triple_id: label.acceptable for label in training_labels(session)}
    # `good` is excluded: their three answers do not count; `bad` got no non-gold item
    # (k = 1 and `good` filled them), and gold ratings never count.
    assert labels == {}
    with session_scope(write=True) as session:
        session.get(User, good).excluded = False
    with session_scope() as session:
        labels = {label.triple_id: label.acceptable for label in training_labels(session)}
    assert labels == {ids[0]: True, ids[1]: False, ids[2]: True}


def test_ratings_train_activate_score_and_filter_with_a_worker(
    settings, engine, celery_worker, tiny_base: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    labels = labelled_corpus()
    _campaign_id, truth = calibration_campaign()
    unlabelled = add_triples(30, head="PersonX reads {i}", tail="to learn {i}")
    with critic_settings(settings, tiny_base):
        with session_scope(write=True) as session:
            chain = loop.request_training(session, reason="test")
        from app.critic.queueing import dispatch_training

        dispatch_training(chain)
        jobs = wait_for_jobs(chain.train_job_id, chain.evaluate_job_id, chain.score_job_id)
        assert [jobs[j].state for j in sorted(jobs)] == [JobState.succeeded] * 3, {
            j: (job.message, job.error) for j, job in jobs.items()
        }
        score_job = jobs[chain.score_job_id]
        assert score_job.done == score_job.total  # the bar ends full and exact
        assert score_job.result["chunks"] > 1  # fanned out in chunks
        with session_scope() as session:
            version = session.get(CriticVersion, chain.version_id)
            assert version.state == CriticState.active and active_version(session) == version
            assert version.metrics["roc_auc"] > 0.9
            assert {p["target_recall"] for p in version.metrics["precision_at_recall"]} >= {0.8}
            snapshot = version.label_snapshot
            assert snapshot["labels"] == len(labels) + len(truth)
            assert snapshot["train"] + snapshot["held_out"] == snapshot["labels"]
            calibration = version.metrics["calibration"]
            assert calibration["labels"] == len(truth)
            at = calibration["at_threshold"]
            assert at["threshold"] == version.threshold
            assert at["sample_kept"] > 0, calibration
            assert at["low"] <= at["precision"] <= at["high"]
            assert Path(version.path, "config.json").is_file()
            corpus = session.scalar(select(func.count()).select_from(Triple))
            scored = session.scalar(
                select(func.count()).where(Score.critic_version_id == version.id)
            )
            assert scored == corpus  # every triple, labelled or not, once
            threshold = choose_threshold(session, version.id, "recall", 0.8)
            kept = preview(session, version.id, threshold)
            assert 0 < kept.kept < corpus
            unlabelled_scores = session.scalars(
                select(Score.p_accept).where(
                    Score.critic_version_id == version.id, Score.triple_id.in_(unlabelled)
                )
            ).all()
            assert len(unlabelled_scores) == len(unlabelled)

        # Newly imported triples are scored by the active version without anyone asking:
        # the import task starts a score job when it ends.
        from app.core.jobs import new_job
        from workers.tasks import import_corpus

        file = tmp_path / "more.tsv"
        file.write_text("".join(f"PersonX paints {i}\txWant\tto sell it {i}\n" for i in range(7)))
        import_job = new_job("import", {"paths": [str(file)], "names": ["more.tsv"]})
        import_corpus.delay(import_job)
        assert wait_for_jobs(import_job)[import_job].state == JobState.succeeded
        deadline = time.monotonic() + 60
        while True:
            with session_scope() as session:
                new = session.scalars(select(Triple.id).where(Triple.source == "more")).all()
                scored_new = session.scalar(
                    select(func.count()).where(
                        Score.critic_version_id == chain.version_id, Score.triple_id.in_(new)
                    )
                )
            if scored_new == 7 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert len(new) == 7 and scored_new == 7
        with session_scope() as session:
            assert scoring_jobs.needs_scoring(session) is None
            score_jobs = session.scalars(select(Job).where(Job.kind == loop.SCORE)).all()
            assert [job.done for job in score_jobs if job.id != chain.score_job_id] == [7]


def test_one_training_at_a_time_even_when_requested_together(settings, engine, tiny_base) -> None:  # type: ignore[no-untyped-def]
    labelled_corpus(n_heads=10)
    outcomes: list[str] = []
    barrier = threading.Barrier(4)

    def request() -> None:
        barrier.wait()
        try:
            with session_scope(write=True) as session:
                loop.request_training(session, reason="race")
            outcomes.append("started")
        except loop.TrainingInProgress as exc:
            outcomes.append(str(exc))

    with critic_settings(settings, tiny_base):
        threads = [threading.Thread(target=request) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert outcomes.count("started") == 1, outcomes
    assert all("already training" in o for o in outcomes if o != "started")
    with session_scope() as session:
        states = session.scalars(select(CriticVersion.state)).all()
        assert states == [CriticState.training]
        assert session.scalar(select(func.count()).select_from(Job)) == 3


def test_bad_base_model_fails_the_job_clearly_and_keeps_the_active_version(
    settings, engine, celery_worker, tiny_base
) -> None:  # type: ignore[no-untyped-def]
    from app.critic.queueing import dispatch_training

    labelled_corpus(n_heads=40)
    with critic_settings(settings, tiny_base):
        with session_scope(write=True) as session:
            first = loop.request_training(session, reason="first")
        dispatch_training(first)
        wait_for_jobs(first.train_job_id, first.evaluate_job_id, first.score_job_id)
        with session_scope(write=True) as session:
            second = loop.request_training(
                session, reason="typo", base_model="no-such-org/no-such-model"
            )
        dispatch_training(second)
        jobs = wait_for_jobs(second.train_job_id, second.evaluate_job_id, second.score_job_id)
    train = jobs[second.train_job_id]
    assert train.state == JobState.failed
    assert "no-such-org/no-such-model" in train.error and "could not be loaded" in train.error
    assert jobs[second.evaluate_job_id].state == JobState.cancelled
    assert jobs[second.score_job_id].state == JobState.cancelled
    with session_scope() as session:
        assert active_version(session).id == first.version_id
        failed = session.get(CriticVersion, second.version_id)
        assert failed.state == CriticState.failed and "could not be loaded" in failed.error
        # The lock is free again: a corrected request starts.
        loop.request_training(session, reason="fixed")
        session.rollback()


def test_too_few_labels_is_a_clear_failure(settings, engine, tiny_base) -> None:  # type: ignore[no-untyped-def]
    from app.core.jobs import run_job

    ids = add_triples(3)
    with session_scope(write=True) as session:
        for triple_id in ids:
            session.add(
                Rating(
                    triple_id=triple_id,
                    origin=RatingOrigin.imported,
                    answer=2,
                    submission_id=uuid.uuid4().hex,
                )
            )
    with critic_settings(settings, tiny_base):
        with session_scope(write=True) as session:
            chain = loop.request_training(session, reason="too early")
        with pytest.raises(ValueError, match="not enough human labels"):
            run_job(chain.train_job_id, loop.run_training)
    with session_scope() as session:
        assert session.get(CriticVersion, chain.version_id).state == CriticState.failed
        assert "not enough human labels" in session.get(Job, chain.train_job_id).error


def ready_version(
    path: Path, auc: float = 0.8, threshold: float = 0.5, active: bool = False
) -> int:
    """A trained version row (the tiny model's folder) without running a training."""
    from app.critic.registry import activate

    with session_scope(write=True) as session:
        version = CriticVersion(
            base_model="tiny",
            path=str(path),
            state=CriticState.ready,
            metrics={"roc_auc": auc},
            threshold=threshold,
            hyperparameters={"names": True, "max_length": 64},
        )
        session.add(version)
        session.flush()
        if active:
            activate(session, version.id)
        return version.id


def test_an_interrupted_rescore_resumes_without_redoing_finished_chunks(
    settings, engine, tiny_base
) -> None:  # type: ignore[no-untyped-def]
    from app.core.job_control import fail_stale_jobs

    ids = add_triples(120, head="PersonX cooks {i}", tail="to eat {i}")
    version_id = ready_version(tiny_base, active=True)
    with critic_settings(settings, tiny_base, critic_score_chunk_size=20):
        with session_scope(write=True) as session:
            first_job = scoring_jobs.request_scoring(session).id
        _, chunks = scoring_jobs.begin_scoring(first_job)
        assert len(chunks) == 6
        for chunk in chunks[:3]:  # half done, then the worker dies
            scoring_jobs.run_chunk(first_job, version_id, chunk.first_id, chunk.last_id)
        with session_scope() as session:
            assert session.get(Job, first_job).done == 60
            before = dict(
                session.execute(
                    select(Score.triple_id, Score.p_accept).where(
                        Score.critic_version_id == version_id
                    )
                ).all()
            )
        with session_scope(write=True) as session:  # beat's sweep notices the silence
            assert fail_stale_jobs(session, timedelta(0)) == 1
        with session_scope(write=True) as session:
            second_job = scoring_jobs.request_scoring(session).id
        _, rest = scoring_jobs.begin_scoring(second_job)
        assert sum(chunk.size for chunk in rest) == 60 and rest[0].first_id == ids[60]
        for chunk in rest:
            scoring_jobs.run_chunk(second_job, version_id, chunk.first_id, chunk.last_id)
        # A chunk delivered twice scores nothing new and counts nothing.
        assert (
            scoring_jobs.run_chunk(second_job, version_id, rest[0].first_id, rest[0].last_id) == 0
        )
    with session_scope() as session:
        job = session.get(Job, second_job)
        assert (job.state, job.done, job.total) == (JobState.succeeded, 60, 60)
        after = dict(
            session.execute(
                select(Score.triple_id, Score.p_accept).where(Score.critic_version_id == version_id)
            ).all()
        )
    assert set(after) == set(ids)
    assert {t: after[t] for t in before} == before  # finished chunks were not redone


def test_retrain_trigger_counts_fresh_usable_labels(
    settings, engine, tiny_base, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    import workers.critic_tasks as tasks
    from app.critic import queueing

    started: list[int] = []
    monkeypatch.setattr(
        queueing, "dispatch_training", lambda chain: started.append(chain.version_id)
    )
    monkeypatch.setattr(queueing, "dispatch_scoring", lambda job_id: None)
    labelled_corpus(n_heads=1, per_head=4)
    with critic_settings(settings, tiny_base, critic_retrain_labels=5):
        with session_scope() as session:
            assert loop.retrain_due(session, settings) is None  # 4 < 5
        labelled_corpus(n_heads=1, per_head=1, first_head=50)
        with session_scope() as session:
            assert loop.retrain_due(session, settings) == "5 fresh labels since the last training"
        tasks.critic_tick()
        tasks.critic_tick()  # the lock: a second tick starts nothing while one trains
        assert len(started) == 1
        with session_scope(write=True) as session:
            version = session.get(CriticVersion, started[0])
            version.state = CriticState.ready  # as if it finished; counting restarts here
        ids = add_triples(10, head="PersonX swims {i}", tail="to cool off {i}", source="swim")
        with session_scope(write=True) as session:
            campaign_id = create_campaign(
                session,
                CampaignSpec(
                    name="g",
                    ratings_per_item=1,
                    sources=["swim"],
                    gold_items={t: 2 for t in ids[:5]},
                ),
            ).id
        excluded = annotator("excluded")
        rate_campaign(campaign_id, excluded, dict.fromkeys(ids, 2))
        with session_scope(write=True) as session:
            session.get(User, excluded).excluded = True
        with session_scope() as session:
            # 10 ratings arrived: 5 of gold items, 5 from an excluded annotator: none count.
            assert loop.retrain_due(session, settings) is None
        labelled_corpus(n_heads=1, per_head=5, first_head=60)
        with session_scope() as session:
            assert loop.retrain_due(session, settings) is not None
        with (
            critic_settings(settings, tiny_base, critic_retrain_labels=0),
            session_scope() as session,
        ):
            assert loop.retrain_due(session, settings) is None  # 0 turns it off


def test_training_campaigns_sample_uncertainty_first(settings, engine, tiny_base) -> None:  # type: ignore[no-untyped-def]
    ids = add_triples(8, head="PersonX sails {i}", tail="to travel {i}")
    version_id = ready_version(tiny_base, threshold=0.5, active=True)
    p = [0.1, 0.48, 0.95, 0.55, 0.7, 0.51, 0.3]  # ids[7] is not scored yet
    with session_scope(write=True) as session:
        session.add_all(
            Score(critic_version_id=version_id, triple_id=t, p_accept=v)
            for t, v in zip(ids, p, strict=False)
        )
        session.add(  # ids[5] (0.51, the most uncertain) already has a human label
            Rating(
                triple_id=ids[5],
                origin=RatingOrigin.imported,
                answer=2,
                submission_id=uuid.uuid4().hex,
            )
        )
    with session_scope(write=True) as session:
        training = create_campaign(
            session,
            CampaignSpec(name="active", purpose=CampaignPurpose.training, sample_size=3),
        )
        campaign_id = training.id
        assert "uncertainty first" in training.selection["sampling"]
        uniform = create_campaign(
            session, CampaignSpec(name="calib", purpose=CampaignPurpose.calibration)
        )
        assert uniform.selection["sampling"] == "uniform random"
    rater = annotator("active")
    served = []
    while True:
        with session_scope(write=True) as session:
            admit(session, campaign_id, rater, "link")  # entered by its link
            item = next_item(session, campaign_id, rater)
            if item is None:
                break
            served.append(session.get(CampaignItem, item.item_id).triple_id)
            submit_rating(session, campaign_id, rater, item.item_id, 2, uuid.uuid4().hex)
    # |p - 0.5|: ids[1] 0.02, ids[3] 0.05, ids[4] 0.2 (ids[5] is labelled, so skipped).
    assert served == [ids[1], ids[3], ids[4]]
    with session_scope(write=True) as session:
        everything = create_campaign(
            session, CampaignSpec(name="all", purpose=CampaignPurpose.training)
        )
        order = (
            session.execute(
                select(CampaignItem.triple_id)
                .where(CampaignItem.campaign_id == everything.id)
                .order_by(CampaignItem.sort_key)
            )
            .scalars()
            .all()
        )
    # Labelled triples (ids[5], and the three just rated) are left out; unscored ids[7] last.
    assert order == [ids[6], ids[0], ids[2], ids[7]]


def test_a_chain_the_broker_refuses_releases_the_lock(
    settings, engine, tiny_base, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    from app.core import queue
    from app.critic import queueing

    class Refused:
        def apply_async(self) -> None:
            raise OSError("broker unreachable")

    monkeypatch.setattr(queue, "chain", lambda *links: Refused())
    labelled_corpus(n_heads=4)
    with critic_settings(settings, tiny_base):
        with session_scope(write=True) as session:
            chain = loop.request_training(session, reason="no broker")
        with pytest.raises(queue.BrokerUnavailable):
            queueing.dispatch_training(chain)
        with session_scope() as session:
            assert session.get(CriticVersion, chain.version_id).state == CriticState.failed
            train = session.get(Job, chain.train_job_id)
            assert train.state == JobState.failed and "broker unreachable" in train.error
            assert session.get(Job, chain.evaluate_job_id).state == JobState.cancelled
            assert session.get(Job, chain.score_job_id).state == JobState.cancelled
        with session_scope(write=True) as session:
            loop.request_training(session, reason="broker back")  # the lock is free


@pytest.mark.parametrize("auc", [0.3, 0.74])
def test_evaluation_keeps_a_weak_version_ready_with_a_reason(
    settings, engine, tiny_base, auc
) -> None:  # type: ignore[no-untyped-def]
    """A chance-level first version, or one clearly worse than the active: kept for review."""
    from app.core.jobs import run_job

    current = ready_version(tiny_base, auc=0.8, active=True) if auc > 0.5 else None
    candidate = ready_version(tiny_base, auc=auc)
    with session_scope(write=True) as session:
        job_id = create_evaluation_job(session, candidate)
    with critic_settings(settings, tiny_base):
        result = run_job(job_id, evaluation.run_evaluation)
    assert result["activated"] is False
    expected = "no better than chance" if current is None else f"below the active version {current}"
    assert "kept ready for review" in result["message"] and expected in result["message"]
    with session_scope() as session:
        assert session.get(CriticVersion, candidate).state == CriticState.ready
        assert (active_version(session).id if active_version(session) else None) == current


def create_evaluation_job(session, version_id: int) -> int:  # type: ignore[no-untyped-def]
    from app.core.jobs import create_job

    return create_job(session, loop.EVALUATE, {"version_id": version_id}).id
