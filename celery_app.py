"""The Celery application: settings come from Django's (CELERY_ prefix), tasks from each app's tasks.py.

Queues: ``default`` (scheduled orders, uploads, reports, auto-trading) and ``ml`` (training and prediction
serving, prefetch 1, one process so the model stays loaded).
"""

import os

from celery import Celery

from core.metrics import celery_signals_connect

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "observator.settings.local")

app = Celery("observator")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Task failures/successes, worker and beat heartbeats (core/metrics.py, docs/ops/runbook.md).
celery_signals_connect()
