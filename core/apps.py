from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Platform kernel"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from core.roles import roles_sync

        # After every app's migrations: each role's permissions cover models added later too.
        post_migrate.connect(roles_sync, dispatch_uid="core.roles_sync")
