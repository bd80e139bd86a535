"""N simulated minilabs in one process, for the scale bench: each hot folder's tickets print one at a time,
oldest first, `--print-seconds` per copy, on a clock that does not drift.

A minilab takes its oldest pending ticket (`printers.hotfolder_device.pending_tickets`) into `processing/`
and finishes it at start + print time, where start is when the ticket arrived (its file's time) or when the
print before it ended, whichever is later; so a scan interval delays only when a finished ticket is seen in
`done/`, never the next print. A finished print file is read and checked against the ticket's SHA-256 (a
device reads the whole file) and deleted (the hot-folder convention allows it), so 10,000 rasters do not pile
up on disk. `STATS/device.json` (counts, busy and idle seconds) is rewritten every scan and each finished
ticket is a line of `STATS/done.csv`: title, printer, arrived, started, finished (Unix seconds), copies.

    python -m bench.scale.device SPOOL --print-seconds 12 --stats DIR
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from printers.hotfolder import DONE_DIR, PROCESSING_DIR, TICKET_SUFFIX, move_ticket
from printers.hotfolder_device import pending_tickets


@dataclass
class Minilab:
    folder: Path
    free_at: float = 0.0  # when the print in hand ends (or the last one ended)
    ticket: Path | None = None  # the ticket in processing/
    ticket_data: dict[str, Any] = field(default_factory=dict)
    arrived: float = 0.0
    started: float = 0.0


@dataclass
class Totals:
    started_at: float
    done: int = 0
    copies_done: int = 0
    bad_files: int = 0
    busy_seconds: float = 0.0
    idle_seconds: float = 0.0  # gaps between prints while the lab had nothing for this minilab
    pending: int = 0
    printing: int = 0


def count_pending(folder: Path) -> int:
    try:
        with os.scandir(folder) as entries:
            return sum(
                1
                for entry in entries
                if entry.name.endswith(TICKET_SUFFIX)
                and not entry.name.startswith(".")
                and len(entry.name) == 37
            )
    except FileNotFoundError:
        return 0


def _finish(lab: Minilab, totals: Totals, log: TextIO) -> None:
    assert lab.ticket is not None
    file_name = Path(str(lab.ticket_data.get("file_name", ""))).name
    print_file = lab.folder / PROCESSING_DIR / file_name
    try:
        digest = hashlib.sha256(print_file.read_bytes()).hexdigest()
        print_file.unlink()
    except OSError:
        digest = ""
    if digest != lab.ticket_data.get("sha256"):
        totals.bad_files += 1
    move_ticket(folder=lab.folder, ticket_path=lab.ticket, directory=DONE_DIR)
    copies = int(lab.ticket_data.get("copies", 1))
    totals.done += 1
    totals.copies_done += copies
    log.write(
        f"{lab.ticket_data.get('title', '')},{lab.folder.name},{lab.arrived:.3f},{lab.started:.3f},"
        f"{lab.free_at:.3f},{copies}\n"
    )
    lab.ticket = None


def _start_next(lab: Minilab, totals: Totals, print_seconds: float) -> None:
    for ticket in pending_tickets(folder=lab.folder):
        try:
            data = json.loads(ticket.read_text())
            arrived = ticket.stat().st_mtime
            moved = move_ticket(folder=lab.folder, ticket_path=ticket, directory=PROCESSING_DIR)
        except (OSError, ValueError):
            continue  # cancelled by the lab between the listing and the move
        start = max(lab.free_at, arrived)
        if lab.free_at and start > lab.free_at:
            totals.idle_seconds += start - lab.free_at
        duration = print_seconds * int(data.get("copies", 1))
        totals.busy_seconds += duration
        lab.ticket, lab.ticket_data, lab.arrived, lab.started = moved, data, arrived, start
        lab.free_at = start + duration
        return


def scan(labs: list[Minilab], totals: Totals, *, print_seconds: float, log: TextIO) -> None:
    now = time.time()
    pending = 0
    for lab in labs:
        if lab.ticket is not None and now >= lab.free_at:
            _finish(lab, totals, log)
        if lab.ticket is None:
            _start_next(lab, totals, print_seconds)
        pending += count_pending(lab.folder)
    totals.pending = pending
    totals.printing = sum(1 for lab in labs if lab.ticket is not None)


def stats_write(directory: Path, totals: Totals, *, printers: int, print_seconds: float) -> None:
    payload = {
        "printers": printers,
        "print_seconds": print_seconds,
        "started_at": totals.started_at,
        "now": time.time(),
        "done": totals.done,
        "copies_done": totals.copies_done,
        "bad_files": totals.bad_files,
        "busy_seconds": totals.busy_seconds,
        "idle_seconds": totals.idle_seconds,
        "pending": totals.pending,
        "printing": totals.printing,
    }
    temporary = directory / ".device.json.tmp"
    temporary.write_text(json.dumps(payload))
    os.replace(temporary, directory / "device.json")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scale.device", description=__doc__)
    parser.add_argument("spool", type=Path, help="HOTFOLDER_ROOT: every sub-folder is one minilab")
    parser.add_argument("--print-seconds", type=float, default=12.0, help="seconds per copy (default 12)")
    parser.add_argument("--scan-seconds", type=float, default=0.25, help="seconds between scans")
    parser.add_argument("--stats", type=Path, required=True, help="folder for device.json and done.csv")
    arguments = parser.parse_args()
    stopping = []
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.append(signum))
    signal.signal(signal.SIGINT, lambda signum, frame: stopping.append(signum))
    labs = [Minilab(folder=path) for path in sorted(arguments.spool.iterdir()) if path.is_dir()]
    totals = Totals(started_at=time.time())
    with open(arguments.stats / "done.csv", "a") as log:
        while not stopping:
            scan(labs, totals, print_seconds=arguments.print_seconds, log=log)
            log.flush()
            stats_write(arguments.stats, totals, printers=len(labs), print_seconds=arguments.print_seconds)
            time.sleep(arguments.scan_seconds)
    print(f"device: {totals.done} tickets, {totals.bad_files} bad files", file=sys.stderr)


if __name__ == "__main__":
    main()
