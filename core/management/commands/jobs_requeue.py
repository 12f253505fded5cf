"""manage.py jobs_requeue: send again the tasks of jobs that need one (core.tasks.jobs_requeue).

Every worker already does this at start and every JOB_REQUEUE_SECONDS; the command is for a
deployment without workers running yet, or to see at once what a broker outage left behind.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from core.errors import BrokerUnavailable
from core.tasks import jobs_requeue


class Command(BaseCommand):
    help = (
        "Send again the task of every pending job that never reached the broker and of every running job whose "
        "worker was lost (workers do this by themselves at start and every JOB_REQUEUE_SECONDS)."
    )

    def handle(self, *args, **options):
        try:
            sent = jobs_requeue()
        except BrokerUnavailable:
            raise CommandError(
                "The task queue (broker) is unreachable: nothing could be sent. The workers send the waiting jobs "
                "by themselves once it is back."
            ) from None
        if not sent:
            self.stdout.write("Nothing to send: no job is waiting for the broker or was left by a lost worker.")
        for model, count in sorted(sent.items()):
            self.stdout.write(f"{model}: {count} sent again")
