"""The Celery application: settings come from Django's (CELERY_ prefix), tasks from each app's tasks.py.

Queues: ``default`` (scheduled orders, uploads, reports) and ``ml`` (training and prediction serving,
prefetch 1, one process so the model stays loaded).
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "observator.settings.local")

app = Celery("observator")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Market feeds (news) keep their tasks in market/tasks_feeds.py, registered as market.tasks.*.
app.autodiscover_tasks(related_name="tasks_feeds")

# Task failures/successes, worker and beat heartbeats (core/metrics.py, docs/ops/runbook.md).
from core.metrics import celery_signals_connect  # noqa: E402

celery_signals_connect()
