"""manage.py demo: migrate, create demo accounts and collections, serve the site with a cpu and a gpu worker."""

from __future__ import annotations

import os
import signal
import subprocess

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from core.workers import ROLES, worker_argv
from readerstudy.demo import (
    DEMO_RUN_DURATION,
    PHANTOM_DATASET,
    demo_collections_import,
    demo_methods_train,
    demo_run_queue,
    demo_studies_create,
    demo_users_create,
)
from retrieval.models import Dataset


class Command(BaseCommand):
    help = "Set up the demo (accounts, generated collections, a model run) and serve it with its workers."

    def add_arguments(self, parser):
        parser.add_argument("--addrport", default="127.0.0.1:8000")
        parser.add_argument("--setup-only", action="store_true", help="prepare data and exit")
        parser.add_argument("--phantoms", type=int, default=240, help="number of phantom radiographs")
        parser.add_argument(
            "--methods",
            action="store_true",
            help="also train every method of the papers on the phantoms here (inline, about "
            "half an hour on two CPU cores) and print the comparison table",
        )

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
            self.stdout.write(f"  {username:<12} {password or '(changed by its user)':<22} {', '.join(roles)}")
        if setup_only:
            return
        self._serve(addrport)

    def _serve(self, addrport: str) -> None:
        """runserver in this process, a cpu and a gpu worker beside it (core.workers: the command lines
        every launcher uses). SIGTERM stops the workers as Ctrl-C does."""
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"}
        workers = [subprocess.Popen(worker_argv(role), env=env) for role in ROLES]

        def stop(signum, frame):  # SIGTERM: leave runserver through the same path as Ctrl-C
            raise KeyboardInterrupt

        previous = signal.signal(signal.SIGTERM, stop)
        pids = ", ".join(f"{role} {w.pid}" for role, w in zip(ROLES, workers))
        self.stdout.write(
            self.style.SUCCESS(
                f"\nWorkers started (pids: {pids}); demo pid {os.getpid()}. Open http://{addrport}/ and log in.\n"
            )
        )
        self.stdout.write(
            f"The demo run trains in the gpu worker: {DEMO_RUN_DURATION}. Watch it on the "
            f"'Model runs' page of {PHANTOM_DATASET!r}.\n"
        )
        self.stdout.flush()
        try:
            call_command("runserver", addrport, use_reloader=False)
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
            for w in workers:
                if w.poll() is None:
                    w.send_signal(signal.SIGTERM)  # warm shutdown: the task in hand is finished or re-queued
            for w in workers:
                try:
                    w.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    w.kill()
                    w.wait()

    def _train_methods(self):
        """Every method on the phantoms' default split, then `compare_methods` on it."""
        dataset = Dataset.objects.get(name=PHANTOM_DATASET)
        split = dataset.splits.get(name="default")
        demo_methods_train(dataset=dataset, split=split, stdout=self.stdout)
        call_command("compare_methods", PHANTOM_DATASET, "--split", "default", "--k", "5", "10", stdout=self.stdout)
