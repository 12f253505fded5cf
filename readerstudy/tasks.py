"""Platform-level tasks."""

from core.tasks import cpu_task


@cpu_task
def ping(*, token: str) -> str:
    """Write `token` to the cache-free marker table so a test can see a worker ran it."""
    from readerstudy.models import WorkerPing

    WorkerPing.objects.get_or_create(token=token)
    return token
