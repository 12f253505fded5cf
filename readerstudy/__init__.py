"""The Django project package and the reader-study domain."""

from readerstudy.celery import app as celery_app

__all__ = ("celery_app",)
