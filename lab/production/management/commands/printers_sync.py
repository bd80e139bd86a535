"""`manage.py printers_sync`: import the CUPS server's queues and the media they hold as printers."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from lab.production.routing import jobs_route_waiting
from lab.production.sync import printers_sync


class Command(BaseCommand):
    help = "Create/update a printer per CUPS queue with its media sizes and state."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--server", default=settings.CUPS_SERVER, help="CUPS host:port")
        parser.add_argument("--papers", default="lustre,glossy", help="papers assumed loaded in new printers")
        parser.add_argument(
            "--host",
            default=settings.PRINT_HOST,
            help="the print host whose worker sends to these queues (Printer.host; default $PRINT_HOST): a"
            " printer without one is sent to through queue 'print', which no reference-deployment unit"
            " consumes",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        result = printers_sync(
            server=options["server"], default_papers=options["papers"].split(","), host=options["host"]
        )
        routed = jobs_route_waiting()
        self.stdout.write(
            f"created: {', '.join(result.created) or '-'}; updated: {', '.join(result.updated) or '-'}; "
            f"{routed} waiting jobs routed"
        )
        if result.created and not options["host"] and not settings.DEMO_SECRETS:
            # Outside demo mode the lab runs the reference units, where only printlab-print@<name> (which
            # sets PRINT_HOST) consumes print.<name>: a shell has no PRINT_HOST, and jobs waited `ready`.
            self.stderr.write(
                f"created without a host: {', '.join(result.created)}: their jobs go to queue 'print', which"
                " no reference-deployment unit consumes; import them with --server <print host>:631"
                " --host <name>, or give each its host in the lab admin"
            )
        if result.unprintable_products:
            self.stderr.write(
                "no printer holds the size and paper of: " + ", ".join(result.unprintable_products)
            )
