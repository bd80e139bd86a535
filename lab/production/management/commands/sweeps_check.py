"""`manage.py sweeps_check`: every scheduled sweep's last success; exit status 1 when one is overdue.

For a monitor outside beat (a cron job, a systemd timer, a Nagios check): beat cannot report its own death.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from lab.production.sweeps import sweeps_status


def _seconds(value: timedelta) -> str:
    return f"{value.total_seconds():.0f}s"


class Command(BaseCommand):
    help = "List each scheduled sweep's last success (database clock); exit 1 when any is overdue."

    def handle(self, *args: Any, **options: Any) -> None:
        overdue = []
        for status in sweeps_status():
            age = "never" if status.age is None else f"{_seconds(status.age)} ago"
            verdict = "OVERDUE" if status.overdue else "ok"
            self.stdout.write(
                f"{status.task:40} {verdict:8} last success {age:>12}"
                f" (every {_seconds(status.interval)}, overdue after {_seconds(status.allowance)})"
            )
            if status.overdue:
                overdue.append(status.task)
        if overdue:
            raise CommandError(f"{len(overdue)} sweep(s) overdue: {', '.join(overdue)}", returncode=1)
