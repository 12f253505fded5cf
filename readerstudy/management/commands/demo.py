"""manage.py demo: migrate, create demo accounts and collections, run web server + worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from readerstudy.demo import (
    PHANTOM_DATASET,
    demo_collections_import,
    demo_methods_train,
    demo_run_queue,
    demo_studies_create,
    demo_users_create,
)


class Command(BaseCommand):
    help = "Set up the demo (accounts, generated collections) and serve it with a worker."

    def add_arguments(self, parser):
        parser.add_argument("--addrport", default="127.0.0.1:8000")
        parser.add_argument("--setup-only", action="store_true", help="prepare data and exit")
        parser.add_argument("--phantoms", type=int, default=240, help="number of phantom radiographs")
        parser.add_argument("--methods", action="store_true",
                            help="also train every method of the papers on the phantoms here (inline, about "
                                 "half an hour on two CPU cores) and print the comparison table")

    def handle(self, *args, addrport, setup_only, phantoms, methods, **options):
        call_command("migrate", interactive=False, verbosity=0)
        if not settings.DEBUG:  # with DEBUG on, runserver serves static files from the apps
            call_command("collectstatic", interactive=False, verbosity=0)
        users = demo_users_create()
        demo_collections_import(n_phantoms=phantoms, stdout=self.stdout)
        demo_run_queue(stdout=self.stdout)
        demo_studies_create(stdout=self.stdout)
        if methods:
            self._train_methods()
        self.stdout.write(self.style.SUCCESS("\nDemo accounts (user / password / role):"))
        for username, password, roles in users:
            self.stdout.write(f"  {username:<12} {password:<18} {', '.join(roles)}")
        if setup_only:
            return
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "readerstudy", "worker", "-Q", "cpu,gpu", "-c", "1",
             "--loglevel", "INFO"],
            env={**os.environ, "DJANGO_SETTINGS_MODULE": "readerstudy.settings"},
        )
        self.stdout.write(self.style.SUCCESS(f"\nWorker started (pid {worker.pid}). Open http://{addrport}/ and log in.\n"))
        try:
            call_command("runserver", addrport, use_reloader=False)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=30)

    def _train_methods(self):
        """Every method on the phantoms' default split, then `compare_methods` on it."""
        from retrieval.models import Dataset

        dataset = Dataset.objects.get(name=PHANTOM_DATASET)
        split = dataset.splits.get(name="default")
        demo_methods_train(dataset=dataset, split=split, stdout=self.stdout)
        call_command("compare_methods", PHANTOM_DATASET, "--split", "default", "--k", "5", "10", stdout=self.stdout)
