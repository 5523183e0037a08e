"""Celery's worker side: the tasks, thin doors onto functions in ``app``.

They are declared on the one app of ``app.core.queue`` (by name), which every door sends
through; ``workers.celery_app`` is what ``celery -A`` and ``skd worker``/``skd beat`` load.
"""

from workers.celery_app import celery_app

__all__ = ["celery_app"]
