"""Celery: the app, its beat schedule, and thin task wrappers over functions in ``app``.

Importing the package loads the configured app (Celery's convention), so ``shared_task``s sent
from the web process go to the configured broker, not to Celery's built-in default.
"""

from workers.celery_app import celery_app

__all__ = ["celery_app"]
