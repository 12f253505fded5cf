"""Platform-level tasks."""

from core.tasks import cpu_task
from readerstudy.models import WorkerPing


@cpu_task
def ping(*, token: str) -> str:
    """Write `token` to the cache-free marker table so a test can see a worker ran it."""
    WorkerPing.objects.get_or_create(token=token)
    return token
