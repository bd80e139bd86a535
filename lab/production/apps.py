from django.apps import AppConfig
from django.core import checks


class ProductionConfig(AppConfig):
    name = "lab.production"
    label = "production"

    def ready(self) -> None:
        from celery.signals import task_postrun

        from lab.production.checks import printers_with_a_refused_target
        from lab.production.sweeps import sweep_succeeded

        checks.register(printers_with_a_refused_target, checks.Tags.database)

        # Weak=False: the receiver is a module function, kept anyway; dispatch_uid: once per process.
        task_postrun.connect(sweep_succeeded, weak=False, dispatch_uid="lab.production.sweep_succeeded")
