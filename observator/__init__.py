"""OBservator project package: settings, ASGI and URL roots.

The Celery app is loaded whenever Django is (web server, ``manage.py``, workers), as Celery's "First steps
with Django" guide does, so that ``@shared_task`` tasks sent from any process use the project's broker and
not Celery's default app (AMQP on localhost).
"""

from celery_app import app as celery_app

__all__ = ("celery_app",)
