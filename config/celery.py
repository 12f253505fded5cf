"""The Celery application: configured from Django's settings (CELERY_*), tasks found in the apps'
`tasks` modules, each routed to the queue its decorator names (core.tasks)."""

from __future__ import annotations

import os

from celery import Celery

from core.tasks import route_task

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
app.conf.task_routes = (route_task,)
