"""A simulated minilab for the hot-folder convention, used only by the demo run command.
Moves pending tickets, oldest first, to done/ after a delay: `python -m printers.hotfolder_device DIR`."""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

from printers.hotfolder import DONE_DIR, PAUSED_MARKER, TICKET_SUFFIX, move_ticket

logger = logging.getLogger(__name__)


def pending_tickets(*, folder: Path) -> list[Path]:
    """Tickets waiting in the inbox, in submission order."""
    tickets = [
        path
        for path in folder.glob(f"*{TICKET_SUFFIX}")
        if not path.name.startswith(".") and len(path.stem) == 32
    ]
    return sorted(tickets, key=_submitted_at)


def process_pending(
    *, folder: Path, delay_seconds: float, sleep: Callable[[float], None] = time.sleep
) -> list[str]:
    """Print every pending ticket once (wait `delay_seconds`, move it to done/); return the job ids done."""
    done: list[str] = []
    for ticket_path in pending_tickets(folder=folder):
        if (folder / PAUSED_MARKER).exists():
            break
        sleep(delay_seconds)
        if not ticket_path.exists():
            # Canceled while we were "printing" the one before it.
            continue
        move_ticket(folder=folder, ticket_path=ticket_path, directory=DONE_DIR)
        logger.info("simulated minilab printed %s", ticket_path.stem)
        done.append(ticket_path.stem)
    return done


def run_device(
    *, folder: Path, delay_seconds: float, poll_seconds: float = 0.5, max_cycles: int | None = None
) -> None:
    """Poll the folder until interrupted (or for `max_cycles` polls)."""
    cycles = 0
    while max_cycles is None or cycles < max_cycles:
        if folder.is_dir():
            process_pending(folder=folder, delay_seconds=delay_seconds)
        cycles += 1
        time.sleep(poll_seconds)


def _submitted_at(ticket_path: Path) -> tuple[str, float]:
    try:
        submitted_at = str(json.loads(ticket_path.read_text()).get("submitted_at", ""))
    except (OSError, ValueError):
        submitted_at = ""
    try:
        modified = ticket_path.stat().st_mtime
    except OSError:
        modified = 0.0
    return submitted_at, modified


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m printers.hotfolder_device", description=__doc__)
    parser.add_argument("folder", type=Path, help="the hot folder to empty")
    parser.add_argument("--delay", type=float, default=2.0, help="seconds to 'print' one job")
    parser.add_argument("--poll", type=float, default=0.5, help="seconds between folder scans")
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    arguments.folder.mkdir(parents=True, exist_ok=True)
    try:
        run_device(folder=arguments.folder, delay_seconds=arguments.delay, poll_seconds=arguments.poll)
    except KeyboardInterrupt:
        logger.info("simulated minilab stopped")


if __name__ == "__main__":
    main()
