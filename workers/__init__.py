"""Celery workers: the app, queues and thin tasks. `celery -A workers worker` finds `workers.app`."""

from workers.app import app

__all__ = ["app"]
