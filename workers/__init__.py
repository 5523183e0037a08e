"""Celery: the app, its beat schedule, and thin task wrappers over functions in ``app``."""
