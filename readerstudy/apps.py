from django.apps import AppConfig


class ReaderStudyConfig(AppConfig):
    name = "readerstudy"
    verbose_name = "Reader studies"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from readerstudy.roles import roles_sync

        post_migrate.connect(roles_sync, dispatch_uid="readerstudy.roles_sync")
