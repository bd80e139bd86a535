"""Test harness: a private CUPS scheduler with ippeveprinter IPP Everywhere printers on loopback.
Starts everything in a temporary directory on free ports and stops only the processes it started.

Facts this harness is built on (Debian 12, CUPS 2.4.2):
- Debian's ippeveprinter aborts with "Unable to initialize DNS-SD." when no D-Bus system bus answers,
  even with `-r off`, so the harness starts a private `dbus-daemon` and points DBUS_SYSTEM_BUS_ADDRESS at it.
- `-a attributes.conf` (ipptool ATTR syntax) is how a printer advertises its own media-supported /
  media-ready / media-col-database; it cannot be combined with -f/-m/-s (ippeveprinter prints its usage),
  so document-format-supported is written into the attributes file too. Enums must be numbers there, and a
  media-size-supported list is required or ippeveprinter rejects every job's media-col.
- `lpadmin -m everywhere` returns before the PPD exists; the queue is usable once DIR/ppd/NAME.ppd appears.
  If PPD creation fails CUPS still keeps a queue that "completes" jobs without sending them, so
  add_printer() raises instead.
- restart_cupsd() SIGTERMs cupsd and starts it on the same directory and port: queues, job history and
  spooled documents survive, the ippeveprinters keep running (what `systemctl restart cups` does).
- ippeveprinter holds a job whose Create-Job came without its Send-Document for as long as it runs, and,
  taking one job at a time, refuses every later one ("The printer is in use."): a cupsd restart that kills
  the ipp backend between the two requests wedges the device and the queue behind it. A real printer aborts
  such a job after its multiple-operation-time-out; the harness does the same from outside
  (tests/support/ipp_device.py, `device_document_timeout`, 5 s).
- Without `-c`, ippeveprinter pretends to print for 5-15 s per job; the harness passes a tiny command
  that sleeps `print_seconds` (default 0) so jobs complete in about a second.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import TracebackType

import cups

from printers.base import JobState
from printers.cups_ipp import connect
from printers.cups_jobs import JOB_ATTRIBUTES
from printers.media import size_for_pwg_media
from tests.support.ipp_device import IncompleteJobTimeout

REQUIRED_PROGRAMS = (
    "cupsd",
    "ippeveprinter",
    "lpadmin",
    "cupsdisable",
    "cupsenable",
    "cancel",
    "dbus-daemon",
)
DEBIAN_PACKAGES = "cups cups-ipp-utils dbus-daemon"
HUNDREDTHS_OF_MM_PER_INCH = Decimal(2540)
# A job in one of these may still reach its device (IPP job-state 3, 4, 5).
UNFINISHED_JOB_STATES = frozenset({JobState.PENDING, JobState.HELD, JobState.PROCESSING})
# What jobs() asks cupsd for: the list the lab asks for (printers/cups_jobs.py). Seen on CUPS 2.4.2:
# Get-Jobs answers a finished job that cupsd has unloaded from memory without its job-name when asked for
# job-id, job-name and job-state (up to five attributes tried), and with it when asked for these.
LISTED_JOB_ATTRIBUTES = JOB_ATTRIBUTES


class CupsHarnessError(RuntimeError):
    """The private CUPS or one of its printers could not be started or driven."""


@dataclass
class _Printer:
    name: str
    port: int
    spool_dir: Path
    attributes_file: Path
    command_file: Path
    log_file: Path
    process: subprocess.Popen[bytes] | None = None


@dataclass
class _Processes:
    dbus: subprocess.Popen[bytes] | None = None
    cupsd: subprocess.Popen[bytes] | None = None
    printers: dict[str, _Printer] = field(default_factory=dict)


@dataclass(frozen=True)
class CupsJob:
    """One job as cupsd lists it: its number, its title (IPP job-name) and its state."""

    number: int
    title: str
    state: JobState


class PrivateCups:
    """`with PrivateCups() as private_cups: private_cups.add_printer("lab1", media=[...])`."""

    def __init__(
        self,
        *,
        keep_directory: bool = False,
        startup_timeout: float = 15.0,
        device_document_timeout: float | None = 5.0,
    ) -> None:
        """`device_document_timeout`: seconds after which each device gives up on a job whose document
        never came (None: never, as ippeveprinter alone does)."""
        self.keep_directory = keep_directory
        self.startup_timeout = startup_timeout
        self.device_document_timeout = device_document_timeout
        self.directory = Path()
        self.port = 0
        self._processes = _Processes()
        self._device_timeout: IncompleteJobTimeout | None = None

    @property
    def server(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> PrivateCups:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        missing = [program for program in REQUIRED_PROGRAMS if _which(program) is None]
        if missing:
            raise CupsHarnessError(
                f"missing programs {', '.join(missing)}: apt-get install {DEBIAN_PACKAGES}"
            )
        self.directory = Path(tempfile.mkdtemp(prefix="printlab-cups-"))
        # Filters and backends run as user lp and must reach the spool and temp dirs.
        self.directory.chmod(0o755)
        try:
            self._start_dbus()
            self._start_cupsd()
        except BaseException:
            self.stop()
            raise
        if self.device_document_timeout is not None:
            self._device_timeout = IncompleteJobTimeout(
                self._device_ports, seconds=self.device_document_timeout, on_cancel=self._log_device_cancel
            ).start()

    def stop(self) -> None:
        if self._device_timeout is not None:
            self._device_timeout.stop()
            self._device_timeout = None
        for printer in self._processes.printers.values():
            _terminate(printer.process)
            printer.process = None
        _terminate(self._processes.cupsd)
        _terminate(self._processes.dbus)
        self._processes = _Processes()
        if self.directory != Path() and not self.keep_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def add_printer(
        self,
        name: str,
        *,
        media: Sequence[str],
        media_ready: Sequence[str] | None = None,
        print_seconds: float = 0.0,
        device_uri_options: str = "",
    ) -> None:
        """Start an ippeveprinter advertising `media` and add a CUPS queue `name` for it (-m everywhere).
        `device_uri_options` ("waitjob=false") are ipp backend options appended to the device URI."""
        if name in self._processes.printers:
            raise CupsHarnessError(f"printer {name!r} already added")
        printer_dir = self.directory / "printers" / name
        spool_dir = printer_dir / "spool"
        spool_dir.mkdir(parents=True)
        printer = _Printer(
            name=name,
            port=_free_port(),
            spool_dir=spool_dir,
            attributes_file=printer_dir / "attributes.conf",
            command_file=printer_dir / "print-command.sh",
            log_file=printer_dir / "ippeveprinter.log",
        )
        printer.attributes_file.write_text(
            ipp_attributes_file(
                media=media, media_ready=list(media_ready) if media_ready else list(media[:1])
            )
        )
        # ippeveprinter saves the command's (empty) stdout as N-title.prn; received_files() skips those.
        printer.command_file.write_text(f"#!/bin/sh\nsleep {print_seconds:g}\nexit 0\n")
        printer.command_file.chmod(0o755)
        self._processes.printers[name] = printer
        self._start_printer(printer)
        device_uri = f"ipp://localhost:{printer.port}/ipp/print"
        self._run("lpadmin", "-p", name, "-E", "-v", device_uri, "-m", "everywhere")
        self._wait_for_ppd(name)
        if device_uri_options:
            # `-m everywhere` cannot query a URI with options ("does not support required IPP
            # attributes"), so the options are set once the PPD exists.
            self._run("lpadmin", "-p", name, "-v", f"{device_uri}?{device_uri_options}")

    def device_uri(self, name: str) -> str:
        return f"ipp://localhost:{self._printer(name).port}/ipp/print"

    def device_port(self, name: str) -> int:
        return self._printer(name).port

    def set_device_uri(self, name: str, device_uri: str) -> None:
        """Point queue `name` at another device URI (e.g. a relay in front of its ippeveprinter)."""
        self._run("lpadmin", "-p", name, "-v", device_uri)

    def spooled_documents(self) -> list[str]:
        """Documents cupsd keeps in its own spool (d<job>-<n>), by name."""
        return sorted(path.name for path in (self.directory / "spool").glob("d*") if path.is_file())

    def received_files(self, name: str) -> list[Path]:
        """Documents the ippeveprinter received and kept (-k), oldest job first."""
        spool_dir = self._printer(name).spool_dir
        documents = [path for path in spool_dir.iterdir() if path.is_file() and path.suffix != ".prn"]
        return sorted(documents, key=lambda path: (_job_number(path), path.name))

    def kill_printer(self, name: str) -> None:
        """SIGKILL the printer's ippeveprinter: the device vanishes without a goodbye."""
        printer = self._printer(name)
        if printer.process is not None:
            printer.process.kill()
            printer.process.wait(timeout=10)
            printer.process = None

    def restart_printer(self, name: str) -> None:
        printer = self._printer(name)
        if printer.process is not None:
            _terminate(printer.process)
            printer.process = None
        self._start_printer(printer)

    def disable(self, name: str, *, reason: str = "") -> None:
        arguments = ["cupsdisable", *(("-r", reason) if reason else ()), name]
        self._run(*arguments)

    def enable(self, name: str) -> None:
        self._run("cupsenable", name)

    def reject(self, name: str) -> None:
        self._run("cupsreject", name)

    def accept(self, name: str) -> None:
        self._run("cupsaccept", name)

    def jobs(self) -> list[CupsJob]:
        """Every job cupsd knows, finished ones too (its history keeps them until purged), by number."""
        connection = connect(server=self.server)
        # pycups keys the answer by job-id: without it the answer is empty.
        answer = connection.getJobs(which_jobs="all", requested_attributes=LISTED_JOB_ATTRIBUTES)
        jobs = []
        for number, attributes in sorted(answer.items()):
            if "job-name" not in attributes:
                # A finished job cupsd has unloaded from memory is listed without its name; asked for by
                # number, it is loaded and named.
                try:
                    attributes = connection.getJobAttributes(
                        number, requested_attributes=["job-name", "job-state"]
                    )
                except cups.IPPError:
                    continue  # purged since it was listed
            jobs.append(
                CupsJob(
                    number=int(number),
                    title=str(attributes["job-name"]),
                    state=JobState.from_ipp(int(attributes["job-state"])),
                )
            )
        return jobs

    def wait_jobs_over(self, is_counted: Callable[[str], bool], *, timeout: float = 30.0) -> list[CupsJob]:
        """Wait until no job whose title `is_counted` is pending, held or processing: such a job may still
        reach its device, so what a device received is complete only then. Returns those left at `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            unfinished = [
                job for job in self.jobs() if job.state in UNFINISHED_JOB_STATES and is_counted(job.title)
            ]
            if not unfinished or time.monotonic() >= deadline:
                return unfinished
            time.sleep(0.2)

    def print_file(self, name: str, path: Path, *, title: str) -> int:
        """Send `path` to queue `name` as a job titled `title`, as any CUPS client may; its job number."""
        return int(connect(server=self.server).printFile(name, str(path), title, {}))

    def cancel_all(self) -> None:
        """Cancel every job not yet final on every queue (`cancel -a`): a clean slate for the next test."""
        self._run("cancel", "-a")

    def stop_cupsd(self) -> None:
        """SIGTERM cupsd and wait for it to exit, as `systemctl stop cups` does; printers keep running.
        Its spool, job history and configuration stay in the directory for start_cupsd()."""
        process = self._processes.cupsd
        if process is None:
            return
        self._processes.cupsd = None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=self.startup_timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
                raise CupsHarnessError("cupsd ignored SIGTERM and was killed") from None
        _wait_until(lambda: not _is_listening(self.port), timeout=self.startup_timeout, what="cupsd exit")

    def start_cupsd(self) -> None:
        """Start cupsd again on the same directory, port and configuration (after stop_cupsd())."""
        if self._processes.cupsd is not None:
            raise CupsHarnessError("cupsd is already running")
        self._launch_cupsd()

    def start_cupsd_afresh(self) -> None:
        """Stop cupsd and start it with its queues but none of its state: no job (spool, job cache), no
        subscription (subscriptions.conf), as a new container or a reinstalled print host starts. cupsd then
        numbers jobs, subscriptions and their events from 1 again."""
        self.stop_cupsd()
        for pattern in ("spool/c[0-9]*", "spool/d[0-9]*", "cache/job.cache*", "subscriptions.conf*"):
            for path in self.directory.glob(pattern):
                path.unlink()
        self.start_cupsd()

    def restart_cupsd(self) -> None:
        """SIGTERM cupsd and start it on the same state: queued jobs survive, printers keep running."""
        self.stop_cupsd()
        self.start_cupsd()

    def pause_cupsd(self) -> None:
        """SIGSTOP cupsd: it stalls; the kernel still takes connections and requests, nothing answers."""
        process = self._processes.cupsd
        assert process is not None and process.poll() is None, "cupsd is not running"
        process.send_signal(signal.SIGSTOP)

    def resume_cupsd(self) -> None:
        """SIGCONT cupsd: it answers again, what it was asked meanwhile included."""
        process = self._processes.cupsd
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGCONT)

    def is_cupsd_running(self) -> bool:
        process = self._processes.cupsd
        return process is not None and process.poll() is None

    def error_log(self) -> str:
        path = self.directory / "log" / "error_log"
        return path.read_text(errors="replace") if path.exists() else ""

    def device_log(self, name: str) -> str:
        """What the printer's ippeveprinter (and the harness's timeout for it) wrote."""
        path = self._printer(name).log_file
        return path.read_text(errors="replace") if path.exists() else ""

    def _device_ports(self) -> dict[str, int]:
        ports = {}
        for printer in list(self._processes.printers.values()):
            process = printer.process  # read once: kill_printer() may set it to None meanwhile
            if process is not None and process.poll() is None:
                ports[printer.name] = printer.port
        return ports

    def _log_device_cancel(self, name: str, job_id: int) -> None:
        with self._printer(name).log_file.open("a") as log:
            seconds = self.device_document_timeout
            log.write(f"harness: job {job_id} cancelled after {seconds:g} s without its document\n")

    def _printer(self, name: str) -> _Printer:
        try:
            return self._processes.printers[name]
        except KeyError:
            raise CupsHarnessError(f"no printer {name!r} in this private CUPS") from None

    def _environment(self) -> dict[str, str]:
        environment = dict(os.environ)
        environment["CUPS_SERVER"] = self.server
        environment["DBUS_SYSTEM_BUS_ADDRESS"] = f"unix:path={self.directory / 'dbus.sock'}"
        return environment

    def _run(self, *arguments: str) -> str:
        completed = subprocess.run(
            list(arguments), env=self._environment(), capture_output=True, text=True, timeout=30, check=False
        )
        if completed.returncode != 0:
            raise CupsHarnessError(f"{' '.join(arguments)} failed: {completed.stderr.strip()}")
        return completed.stdout

    def _start_dbus(self) -> None:
        socket_path = self.directory / "dbus.sock"
        self._processes.dbus = subprocess.Popen(
            ["dbus-daemon", "--session", "--nofork", "--nopidfile", f"--address=unix:path={socket_path}"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_until(lambda: socket_path.exists(), timeout=self.startup_timeout, what="private dbus-daemon")

    def _start_cupsd(self) -> None:
        for subdirectory in ("spool", "cache", "state", "log", "ppd"):
            (self.directory / subdirectory).mkdir(mode=0o755)
        (self.directory / "tmp").mkdir()
        (self.directory / "tmp").chmod(0o1777)
        self.port = _free_port()
        (self.directory / "cups-files.conf").write_text(_cups_files_conf(self.directory))
        (self.directory / "cupsd.conf").write_text(_cupsd_conf(self.port))
        self._launch_cupsd()

    def _launch_cupsd(self) -> None:
        with (self.directory / "log" / "cupsd.stderr").open("ab") as stderr:
            self._processes.cupsd = subprocess.Popen(
                [
                    "cupsd",
                    "-f",
                    "-c",
                    str(self.directory / "cupsd.conf"),
                    "-s",
                    str(self.directory / "cups-files.conf"),
                ],
                env=self._environment(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        process = self._processes.cupsd
        _wait_until(
            lambda: _is_listening(self.port) or process.poll() is not None,
            timeout=self.startup_timeout,
            what="cupsd",
        )
        if process.poll() is not None:
            raise CupsHarnessError(f"cupsd exited with {process.returncode}: {self._log_tail()}")

    def _start_printer(self, printer: _Printer) -> None:
        with printer.log_file.open("ab") as log:
            printer.process = subprocess.Popen(
                [
                    "ippeveprinter",
                    "-p",
                    str(printer.port),
                    "-n",
                    "localhost",
                    "-d",
                    str(printer.spool_dir),
                    "-k",
                    "-a",
                    str(printer.attributes_file),
                    "-c",
                    str(printer.command_file),
                    "-r",
                    "off",
                    printer.name,
                ],
                env=self._environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        process = printer.process
        _wait_until(
            lambda: _is_listening(printer.port) or process.poll() is not None,
            timeout=self.startup_timeout,
            what=f"ippeveprinter {printer.name}",
        )
        if process.poll() is not None:
            raise CupsHarnessError(
                f"ippeveprinter {printer.name} exited with {process.returncode}: "
                f"{printer.log_file.read_text(errors='replace')[-2000:]}"
            )

    def _wait_for_ppd(self, name: str) -> None:
        ppd = self.directory / "ppd" / f"{name}.ppd"
        failure = f"{name}: PPD creation failed"
        _wait_until(
            lambda: (
                ppd.exists()
                or failure in self.error_log()
                or f"{name}: Printer returned invalid data" in self.error_log()
            ),
            timeout=self.startup_timeout,
            what=f"PPD for queue {name}",
        )
        if not ppd.exists():
            raise CupsHarnessError(f"CUPS could not build a driverless PPD for {name}: {self._log_tail()}")

    def _log_tail(self) -> str:
        stderr_path = self.directory / "log" / "cupsd.stderr"
        stderr = stderr_path.read_text(errors="replace") if stderr_path.exists() else ""
        return (stderr + self.error_log())[-2000:]


def ipp_attributes_file(*, media: Sequence[str], media_ready: Sequence[str]) -> str:
    """An ippeveprinter -a file for a borderless colour photo printer with exactly this media."""
    if not media:
        raise CupsHarnessError("a printer needs at least one media name")
    sizes = [_media_dimensions(name) for name in media]
    default = media_ready[0] if media_ready else media[0]
    default_dimensions = _media_dimensions(default)
    lines = [
        "ATTR mimeMediaType document-format-supported application/pdf,image/jpeg,image/pwg-raster",
        "ATTR boolean color-supported true",
        "ATTR integer copies-default 1",
        "ATTR rangeOfInteger copies-supported 1-999",
        # Enums are numbers here: finishings none = 3, portrait = 3, landscape = 4, quality 3..5.
        "ATTR enum finishings-default 3",
        "ATTR enum finishings-supported 3",
        f"ATTR keyword media-supported {','.join(media)}",
        f"ATTR keyword media-ready {','.join(media_ready)}",
        f"ATTR keyword media-default {default}",
        "ATTR collection media-col-database "
        + ", ".join(_media_col(name, size) for name, size in zip(media, sizes, strict=True)),
        "ATTR collection media-col-default " + _media_col(default, default_dimensions),
        "ATTR collection media-col-ready "
        + ", ".join(_media_col(name, _media_dimensions(name)) for name in media_ready),
        "ATTR collection media-size-supported " + ", ".join(_media_size(size) for size in sizes),
        "ATTR integer media-bottom-margin-supported 0",
        "ATTR integer media-left-margin-supported 0",
        "ATTR integer media-right-margin-supported 0",
        "ATTR integer media-top-margin-supported 0",
        "ATTR keyword media-source-supported auto",
        "ATTR keyword media-type-supported auto,photographic-glossy",
        "ATTR enum orientation-requested-default 3",
        "ATTR enum orientation-requested-supported 3,4",
        "ATTR keyword output-bin-default face-up",
        "ATTR keyword output-bin-supported face-up",
        "ATTR integer pages-per-minute 10",
        "ATTR integer pages-per-minute-color 10",
        "ATTR keyword print-color-mode-default color",
        "ATTR keyword print-color-mode-supported auto,color,monochrome",
        "ATTR keyword print-content-optimize-default auto",
        "ATTR keyword print-content-optimize-supported auto",
        "ATTR enum print-quality-default 4",
        "ATTR enum print-quality-supported 3,4,5",
        "ATTR keyword print-rendering-intent-default auto",
        "ATTR keyword print-rendering-intent-supported auto",
        'ATTR text printer-make-and-model "PrintLab Test Minilab"',
        'ATTR text printer-device-id "MFG:PrintLab;MDL:Test Minilab;CMD:PDF,JPEG,PWG;"',
        "ATTR resolution printer-resolution-default 300dpi",
        "ATTR resolution printer-resolution-supported 300dpi",
        "ATTR resolution pwg-raster-document-resolution-supported 300dpi",
        "ATTR keyword pwg-raster-document-type-supported sgray_8,srgb_8",
        "ATTR keyword sides-default one-sided",
        "ATTR keyword sides-supported one-sided",
    ]
    return "\n".join(lines) + "\n"


def _media_dimensions(name: str) -> tuple[int, int]:
    size = size_for_pwg_media(name)
    return (
        int((size.short_inches * HUNDREDTHS_OF_MM_PER_INCH).to_integral_value()),
        int((size.long_inches * HUNDREDTHS_OF_MM_PER_INCH).to_integral_value()),
    )


def _media_size(dimensions: tuple[int, int]) -> str:
    width, height = dimensions
    return f"{{ MEMBER integer x-dimension {width} MEMBER integer y-dimension {height} }}"


def _media_col(name: str, dimensions: tuple[int, int]) -> str:
    margins = " ".join(f"MEMBER integer media-{side}-margin 0" for side in ("bottom", "left", "right", "top"))
    return (
        f'{{ MEMBER keyword media-key "{name}" MEMBER collection media-size {_media_size(dimensions)} '
        f'MEMBER keyword media-size-name "{name}" {margins} }}'
    )


def _cups_files_conf(directory: Path) -> str:
    return "\n".join(
        [
            f"ServerRoot {directory}",
            f"RequestRoot {directory / 'spool'}",
            f"CacheDir {directory / 'cache'}",
            f"StateDir {directory / 'state'}",
            f"TempDir {directory / 'tmp'}",
            f"AccessLog {directory / 'log' / 'access_log'}",
            f"ErrorLog {directory / 'log' / 'error_log'}",
            f"PageLog {directory / 'log' / 'page_log'}",
            f"Printcap {directory / 'printcap'}",
            "FileDevice Yes",
            "",
        ]
    )


def _cupsd_conf(port: int) -> str:
    return "\n".join(
        [
            f"Listen 127.0.0.1:{port}",
            "WebInterface No",
            "Browsing No",
            "DefaultAuthType None",
            "LogLevel info",
            "<Location />",
            "  Order allow,deny",
            "  Allow all",
            "</Location>",
            "<Location /admin>",
            "  Order allow,deny",
            "  Allow all",
            "</Location>",
            # CUPS hides job-name from anyone but the (authenticated) owner by default; the reconciler
            # finds jobs by name, so production cupsd.conf needs the same two lines.
            "<Policy default>",
            "  JobPrivateAccess all",
            "  JobPrivateValues none",
            "  SubscriptionPrivateAccess all",
            "  SubscriptionPrivateValues none",
            "  <Limit All>",
            "    Order deny,allow",
            "  </Limit>",
            "</Policy>",
            "",
        ]
    )


def _which(program: str) -> str | None:
    # cupsd and lpadmin live in /usr/sbin, which a non-login PATH may lack.
    search_path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return shutil.which(program, path=search_path)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _is_listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _wait_until(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise CupsHarnessError(f"{what} did not come up within {timeout:g} s")


def _terminate(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)


def _job_number(path: Path) -> int:
    number, _, _ = path.name.partition("-")
    return int(number) if number.isdigit() else 0
