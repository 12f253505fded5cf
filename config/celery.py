"""The Celery application: configured from Django's settings (CELERY_*), tasks found in the apps'
`tasks` modules, each routed to the queue its decorator names (core.tasks); every worker runs the
requeue of jobs that need their task sent again (core.tasks.jobs_requeue)."""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import worker_ready

from core.tasks import route_task

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
app.conf.task_routes = (route_task,)


@worker_ready.connect
def _requeue_in_every_worker(**kwargs):
    """Every worker sends again the jobs that need it, at start and periodically (core.tasks.jobs_requeue)."""
    from core.tasks import requeue_loop_start

    requeue_loop_start()
