"""manage.py worker cpu|gpu: start a Celery worker of one role (see core.workers)."""

from __future__ import annotations

import os

from django.core.management.base import BaseCommand

from core.workers import ROLES, worker_argv, worker_roles


class Command(BaseCommand):
    help = (
        "Start a Celery worker: 'gpu' trains, embeds and indexes (solo pool, one run at a time), "
        "'cpu' imports and computes reports (prefork pool, one process per core)."
    )

    def add_arguments(self, parser):
        parser.add_argument("role", choices=ROLES)
        parser.add_argument("--name", help="worker name (default: <role>@<host>)")
        parser.add_argument(
            "--print", dest="print_only", action="store_true", help="print the command line instead of running it"
        )

    def handle(self, *args, role, name, print_only: bool, **options):
        argv = worker_argv(role, name=name)
        if print_only:
            self.stdout.write(" ".join(argv))
            return
        spec = worker_roles()[role]
        self.stderr.write(
            f"{role} worker: queues {','.join(spec.queues)}, {spec.pool} pool × {spec.concurrency} ({spec.why})"
        )
        os.execv(argv[0], argv)  # the worker replaces this process: signals reach Celery directly
