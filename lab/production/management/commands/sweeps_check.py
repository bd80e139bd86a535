"""`manage.py sweeps_check`: every scheduled sweep's last success; exit status 1 when one is overdue, or
behind (its last run left work for the next: lab/production/sweeps.py).

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
    help = "List each scheduled sweep's last success (database clock); exit 1 when any is overdue or behind."

    def handle(self, *args: Any, **options: Any) -> None:
        overdue, behind = [], []
        for status in sweeps_status():
            age = "never" if status.age is None else f"{_seconds(status.age)} ago"
            verdict = "OVERDUE" if status.overdue else "BEHIND" if status.behind else "ok"
            left = f", {status.work_left} left by its last run" if status.behind else ""
            self.stdout.write(
                f"{status.task:40} {verdict:8} last success {age:>12}"
                f" (every {_seconds(status.interval)}, overdue after {_seconds(status.allowance)}{left})"
            )
            if status.overdue:
                overdue.append(status.task)
            elif status.behind:
                behind.append(status.task)
        problems = [
            f"{len(names)} sweep(s) {what}: {', '.join(names)}"
            for what, names in (("overdue", overdue), ("behind", behind))
            if names
        ]
        if problems:
            raise CommandError("; ".join(problems), returncode=1)
