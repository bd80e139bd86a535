"""`manage.py printer_events`: the printer-events listener (lab/production/listener.py) until SIGTERM."""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from lab.production.listener import printer_events_listen


class Command(BaseCommand):
    help = "Hear CUPS job events and move each job on as it completes (the beat poll stays the safety net)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--pull-seconds",
            type=float,
            default=settings.PRINTER_EVENTS_PULL_SECONDS,
            help="interval between two event requests to one cupsd (PRINTER_EVENTS_PULL_SECONDS)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda number, frame: stop.set())
        printer_events_listen(stop=stop, pull_seconds=options["pull_seconds"])
