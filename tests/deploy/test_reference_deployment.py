"""The reference deployment under deploy/: its systemd units parse and say what deploy/README.md promises
(one beat, one printer-events listener, a print worker per host on its own queue beside CUPS, every required
secret as a credential), and systemd itself accepts them (`systemd-analyze verify`, part of Debian's systemd
package)."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from django.core.management import call_command
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from lab.production.models import Printer
from tests.support.cups import PrivateCups

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "deploy" / "systemd"
ENV_EXAMPLE = ROOT / "deploy" / "printlab.env.example"
SERVICES = sorted(UNITS.glob("*.service"))


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> values (systemd allows repeated keys); continuation lines are not used here."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        header = re.fullmatch(r"\[(\w+)\]", line)
        if header:
            current = sections.setdefault(header.group(1), {})
            continue
        key, separator, value = line.partition("=")
        assert current is not None and separator and re.fullmatch(r"[A-Za-z]+", key), f"{path.name}:{number}"
        current.setdefault(key, []).append(value)
    return sections


def required_secrets() -> set[str]:
    return set(re.findall(r'required_secret\(\s*"(\w+)"', (ROOT / "lab" / "settings.py").read_text()))


def env_example() -> dict[str, str]:
    """The file as systemd's EnvironmentFile= reads it: one pair of surrounding quotes stripped."""
    assignments = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith(("#", ";")):
            continue
        name, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        assignments[name.strip()] = value
    return assignments


def exec_start(path: Path) -> str:
    (command,) = parse_unit(path)["Service"]["ExecStart"]
    return command


def test_every_unit_parses_with_unit_service_and_install_sections():
    assert [path.name for path in SERVICES] == [
        "printlab-audit.service",
        "printlab-beat.service",
        "printlab-default.service",
        "printlab-fetch.service",
        "printlab-migrate.service",
        "printlab-print@.service",
        "printlab-printer-events.service",
        "printlab-raster.service",
        "printlab-web.service",
        "printlab-webhooks.service",
    ]
    for path in SERVICES:
        unit = parse_unit(path)
        assert set(unit) == {"Unit", "Service", "Install"}, path.name
        assert unit["Install"]["WantedBy"] == ["printlab.target"], path.name
        assert unit["Service"]["User"] == ["printlab"], path.name
        after = " ".join(unit["Unit"]["After"]).split()
        assert {"postgresql.service", "network-online.target"} <= set(after), path.name
        if path.name != "printlab-migrate.service":
            assert "redis-server.service" in after and "printlab-migrate.service" in after, path.name


def test_exactly_one_beat_and_no_worker_embeds_one():
    beats = [path.name for path in SERVICES if " -A workers beat" in exec_start(path)]
    embedded = [path.name for path in SERVICES if re.search(r" worker .*(-B\b|--beat)", exec_start(path))]

    assert beats == ["printlab-beat.service"]
    assert embedded == []


def test_exactly_one_printer_events_listener_runs_the_management_command():
    listeners = [path.name for path in SERVICES if "manage.py printer_events" in exec_start(path)]

    assert listeners == ["printlab-printer-events.service"]
    unit = UNITS / "printlab-printer-events.service"
    assert exec_start(unit) == "/opt/printlab/.venv/bin/python manage.py printer_events"
    # It reaches every printer's cupsd over the network, as the poll does: no local CUPS needed.
    assert "cups.service" not in " ".join(parse_unit(unit)["Unit"]["After"])
    assert "printlab-printer-events" in (ROOT / "deploy" / "README.md").read_text()


def test_print_host_worker_consumes_only_its_own_queue_beside_its_cups():
    unit = parse_unit(UNITS / "printlab-print@.service")
    command = exec_start(UNITS / "printlab-print@.service")

    assert " worker -Q print.%i -c 1 " in command
    assert "PRINT_HOST=%i" in unit["Service"]["Environment"]
    assert "cups.service" in " ".join(unit["Unit"]["After"]).split()
    assert "cups.service" in " ".join(unit["Unit"]["Wants"]).split()


def test_web_runs_gunicorn_and_the_default_queue_has_a_worker_apart_from_the_rasters():
    # The access log that leaves out query strings, as scripts/run and the tests' web server use it.
    assert " lab.wsgi --config /opt/printlab/gunicorn.conf.py --bind 127.0.0.1:8000 " in exec_start(
        UNITS / "printlab-web.service"
    )
    assert (ROOT / "gunicorn.conf.py").is_file()
    assert exec_start(UNITS / "printlab-web.service").startswith("/opt/printlab/.venv/bin/gunicorn ")
    # A long raster queue must not hold up releases, polls and e-mail (bench/scale): no worker takes both.
    assert " worker -Q raster -c ${RASTER_CONCURRENCY} " in exec_start(UNITS / "printlab-raster.service")
    assert " worker -Q default -c ${DEFAULT_CONCURRENCY} " in exec_start(UNITS / "printlab-default.service")
    queues_by_unit = {
        path.name: set(match.group(1).split(","))
        for path in SERVICES
        if (match := re.search(r" worker -Q (\S+) ", exec_start(path)))
    }
    assert queues_by_unit == {
        "printlab-audit.service": {"audit"},
        "printlab-default.service": {"default"},
        "printlab-fetch.service": {"fetch"},
        "printlab-print@.service": {"print.%i"},
        "printlab-raster.service": {"raster"},
        "printlab-webhooks.service": {"webhooks"},
    }


def test_every_celery_worker_is_stopped_through_its_main_process():
    # KillMode=control-group (systemd's default) sends SIGTERM to the pool's children too, and the main
    # process then sometimes hung in its pool teardown until the SIGKILL (tests/e2e/test_embedded_worker.py).
    workers = [path for path in SERVICES if " worker -Q " in exec_start(path)]
    assert len(workers) == 6
    for path in workers:
        service = parse_unit(path)["Service"]
        assert (service["KillMode"], service["KillSignal"]) == (["mixed"], ["SIGTERM"]), path.name


def test_the_raster_worker_holds_no_payment_key():
    # Rasters never call Stripe; the default worker does (refunds), and the web (payments, webhooks).
    credentials = {
        path.name: {entry.split(":", 1)[0] for entry in parse_unit(path)["Service"]["LoadCredential"]}
        for path in SERVICES
    }
    assert "stripe_secret_key" not in credentials["printlab-raster.service"]
    assert "stripe_secret_key" not in credentials["printlab-fetch.service"]
    assert "stripe_secret_key" in credentials["printlab-default.service"]


def test_every_required_secret_is_a_systemd_credential_of_every_service():
    secrets = required_secrets()
    assert {"SECRET_KEY", "LAB_MASTER_KEY", "AUDIT_SIGNING_KEY", "AUDIT_RECORD_KEY"} <= secrets
    for path in SERVICES:
        service = parse_unit(path)["Service"]
        credentials = {entry.split(":", 1)[0] for entry in service["LoadCredential"]}
        files = dict(entry.split("=", 1) for entry in service["Environment"] if "_FILE=" in entry)
        for secret in secrets | {"DATABASE_URL"}:
            assert f"{secret}_FILE" in files, (path.name, secret)
        for name, value in files.items():
            assert value.startswith("%d/") and value.removeprefix("%d/") in credentials, (path.name, name)


def test_env_example_sets_no_secret_and_defines_what_the_units_use():
    assignments = env_example()
    settings_text = (ROOT / "lab" / "settings.py").read_text()
    secret_names = required_secrets() | {
        "DATABASE_URL",
        "CELERY_BROKER_URL",
        "CACHE_URL",
        "STRIPE_SECRET_KEY",
        "STRIPE_WEBHOOK_SECRET",
    }

    assert not set(assignments) & {name for secret in secret_names for name in (secret, f"{secret}_FILE")}
    assert "LAB_DEMO_SECRETS" not in assignments
    used_by_units = {name for path in SERVICES for name in re.findall(r"\$\{(\w+)\}", exec_start(path))}
    assert used_by_units == {
        "GUNICORN_WORKERS",
        "RASTER_CONCURRENCY",
        "DEFAULT_CONCURRENCY",
        "WEBHOOK_CONCURRENCY",
    }
    assert used_by_units <= set(assignments)
    for name in set(assignments) - used_by_units:
        assert f'"{name}"' in settings_text, f"{name} is not a setting"
    for name in ("ALLOWED_HOSTS", "TRUSTED_PROXIES", "SECURE_COOKIES", "LAB_STORAGE_DIR", "AUDIT_WITNESS"):
        assert name in assignments


def writable_paths(path: Path) -> list[Path]:
    service = parse_unit(path)["Service"]
    # "-": systemd starts the unit though the path does not exist (as on a host upgraded from before it)
    writable = [
        Path(entry.removeprefix("-"))
        for value in service.get("ReadWritePaths", [])
        for entry in value.split()
    ]
    return writable + [Path("/var/lib") / name for name in service.get("StateDirectory", [])]


def test_every_process_that_writes_the_blob_store_or_the_witness_may_write_there_under_its_sandbox():
    # ProtectSystem=strict makes every other path read-only: the signer (a beat task on the default queue)
    # and the auditors' export (web) lock and append the witness, so a witness outside their ReadWritePaths
    # meant no checkpoint was ever signed and every export answered 500 in the reference deployment.
    # The hot folders too: the print worker writes a job there, the poll and the discard sweep (default
    # worker), the listener and the staff's cancels (web) move and delete tickets and files there. Left at its
    # default under LAB_VAR_DIR, each host read its own empty folder and a minilab's jobs stayed `submitted`.
    settings = env_example()
    storage = Path(settings["LAB_STORAGE_DIR"])
    witness = Path(urlparse(settings["AUDIT_WITNESS"]).path).parent
    hot_folders = Path(settings.get("HOTFOLDER_ROOT", settings["LAB_VAR_DIR"] + "/spool"))  # lab/settings.py
    needs = {
        "printlab-web.service": [storage, witness, hot_folders],
        "printlab-audit.service": [witness],
        "printlab-default.service": [storage, hot_folders],
        "printlab-fetch.service": [storage],  # a photo fetched by URL is stored
        "printlab-raster.service": [storage],
        "printlab-print@.service": [storage, hot_folders],
        "printlab-printer-events.service": [hot_folders],
    }
    assert not hot_folders.is_relative_to(settings["LAB_VAR_DIR"]), "HOTFOLDER_ROOT must be one shared folder"
    # The install steps make it (and it is mounted there) on the hosts
    assert f" {hot_folders} " in (ROOT / "deploy" / "README.md").read_text()
    for name, paths in needs.items():
        unit = UNITS / name
        assert parse_unit(unit)["Service"]["ProtectSystem"] == ["strict"], name
        for needed in paths:
            assert any(needed.is_relative_to(allowed) for allowed in writable_paths(unit)), (name, needed)


HOT_FOLDER_UNITS = (
    "printlab-default.service",
    "printlab-print@.service",
    "printlab-printer-events.service",
    "printlab-web.service",
)


def install_commands() -> list[str]:
    """The lines of the ```sh block of deploy/README.md's Install step, comments included."""
    text = (ROOT / "deploy" / "README.md").read_text()
    section = text.split("\n## Install (each host)\n", 1)[1].split("\n## ", 1)[0]
    return section.split("```sh\n", 1)[1].split("```", 1)[0].splitlines()


def test_every_host_makes_the_hot_folders_before_the_units_that_write_there_start():
    # With "-", systemd leaves out a path missing at a unit's start, and under ProtectSystem=strict a folder
    # made later is read-only in every running unit: a lab that made it for its first minilab after the
    # install had every job failed and the printer offline until each unit was restarted. So every host
    # makes it at install (and on an upgrade from before it), and a unit does not start without it.
    hot_folders = str(Path(env_example()["HOTFOLDER_ROOT"]))
    for name in HOT_FOLDER_UNITS:
        service = parse_unit(UNITS / name)["Service"]
        entries = [entry for value in service["ReadWritePaths"] for entry in value.split()]
        assert [entry for entry in entries if entry.removeprefix("-") == hot_folders] == [hot_folders], name

    (makes,) = [line for line in install_commands() if hot_folders in line.split("#", 1)[0].split()]
    command, _, comment = makes.partition("#")
    assert command.startswith("install -d ")
    assert comment.strip().startswith("every host") and " only" not in comment, makes
    upgrade = upgrade_commands()
    (made,) = [
        index
        for index, line in enumerate(upgrade)
        if f"install -d -m 0750 -o printlab -g printlab {hot_folders}" in line
    ]
    assert made < upgrade.index("systemctl start printlab.target"), upgrade


def test_the_readme_links_the_reference_deployment():
    assert "(deploy/README.md)" in (ROOT / "README.md").read_text()


def test_systemd_accepts_the_units(tmp_path):
    analyze = shutil.which("systemd-analyze")
    # The test command installs it (Debian package systemd): a missing tool is a failure, never a skip.
    assert analyze is not None, "systemd-analyze is not installed: apt-get install systemd"
    # verify checks that ExecStart's program exists: point the units at this checkout's venv.
    venv_bin = str(Path(sys.executable).parent) + "/"
    for path in [*SERVICES, UNITS / "printlab.target"]:
        (tmp_path / path.name).write_text(path.read_text().replace("/opt/printlab/.venv/bin/", venv_bin))
    units = [str(tmp_path / p.name) for p in SERVICES if "@" not in p.name]
    instance = tmp_path / "printlab-print@alpha.service"
    completed = subprocess.run(
        [analyze, "verify", "--man=no", *units, str(tmp_path / "printlab.target"), str(instance)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )

    # Warnings (an unknown key is only "ignoring") count as failures too.
    assert (completed.returncode, completed.stdout + completed.stderr) == (0, "")


def test_every_queue_a_job_can_be_sent_to_is_consumed_or_the_docs_give_every_printer_a_host():
    # print_queue(): print.<host>, or 'print' for a printer without a host, which no unit consumes; the
    # install steps import a print host's queues with its host
    consumed = {
        queue
        for path in SERVICES
        for match in re.finditer(r" -Q (\S+)", exec_start(path))
        for queue in match.group(1).split(",")
    }
    assert consumed == {"default", "raster", "print.%i", "webhooks", "fetch", "audit"}
    assert "printers_sync --server <host>:631 --host <name>" in (ROOT / "deploy" / "README.md").read_text()


def test_every_task_goes_to_a_queue_a_unit_consumes_and_webhooks_never_share_the_default_queue():
    # A customer's endpoint decides how long a delivery waits (up to its 10 s timeout): ten endpoints that
    # drop packets held both default processes for good, and releases, polls and e-mail waited behind them.
    # So does a photo's URL (POST /api/v1/assets, anonymous): a host that drops SYNs held a default process
    # 60-100 s a fetch, and one client at the anonymous throttle backed `default` up by most of an hour a
    # minute.
    from workers import app

    app.loader.import_default_modules()  # the tasks autodiscovery registers, as a worker's start imports them
    consumed = {
        queue
        for path in SERVICES
        for match in re.finditer(r" -Q (\S+)", exec_start(path))
        for queue in match.group(1).split(",")
    }
    routed = {
        name: app.amqp.router.route({}, name)["queue"].name
        for name in app.tasks
        if not name.startswith("celery.")
    }
    # A print job is sent to its printer's host's queue (print.<host>), which printlab-print@<host> consumes.
    not_consumed = {
        name: queue for name, queue in routed.items() if queue not in consumed and queue != "print"
    }

    assert not_consumed == {}
    assert routed["notify.webhook_deliver"] == "webhooks"
    assert routed["intake.asset_fetch"] == "fetch"
    units_with_default = [
        path.name for path in SERVICES if re.search(r" -Q \S*\bdefault\b", exec_start(path))
    ]
    assert units_with_default == ["printlab-default.service"]
    default_queues = re.search(r" -Q (\S+)", exec_start(UNITS / "printlab-default.service"))
    assert default_queues is not None and default_queues.group(1).split(",") == ["default"]


def test_photo_fetches_by_url_have_a_worker_of_their_own_on_every_app_host():
    # Not `default` (above), nor the webhooks worker's processes: a slow photo URL and a slow customer
    # endpoint never hold each other's. The app hosts enable it, and every stack that runs one worker for all
    # queues (scripts/run, the tests' worker) consumes it, or a photo by URL stays `pending` there.
    from tests.support.celery_worker import QUEUES
    from workers import app

    app.loader.import_default_modules()
    consumers = [
        path.name
        for path in SERVICES
        for match in re.finditer(r" -Q (\S+)", exec_start(path))
        if "fetch" in match.group(1).split(",")
    ]
    (app_host,) = [
        line
        for line in (ROOT / "deploy" / "README.md").read_text().splitlines()
        if line.startswith("- **app host**")
    ]
    run_worker = re.search(r"celery -A workers worker -Q (\S+)", (ROOT / "scripts" / "run").read_text())

    assert app.amqp.router.route({}, "intake.asset_fetch")["queue"].name == "fetch"
    assert "fetch" in {queue.name for queue in app.conf.task_queues}  # and so in the queue-depth gauge
    assert consumers == ["printlab-fetch.service"]
    assert " worker -Q fetch -c 4 " in exec_start(UNITS / "printlab-fetch.service")
    assert "printlab-fetch" in app_host
    assert run_worker is not None and "fetch" in run_worker.group(1).split(",")
    assert "fetch" in QUEUES


def test_the_audit_checkpoints_go_to_one_worker_beside_beat_and_the_witness():
    # On `default`, which every app host's printlab-default consumes, each host's worker took some of the
    # checkpoints and appended them to its own host's witness file: `audit_verify` found every witness
    # incomplete (coverage gaps). One unit consumes `audit`, and the docs enable it beside beat.
    from workers import app

    app.loader.import_default_modules()
    consumers = [
        path.name
        for path in SERVICES
        for match in re.finditer(r" -Q (\S+)", exec_start(path))
        if "audit" in match.group(1).split(",")
    ]
    roles = [
        line for line in (ROOT / "deploy" / "README.md").read_text().splitlines() if line.startswith("- **")
    ]
    (app_host,) = [line for line in roles if line.startswith("- **app host**")]
    (beat_host,) = [line for line in roles if line.startswith("- **the one beat host**")]

    assert app.amqp.router.route({}, "audit.checkpoint")["queue"].name == "audit"
    assert consumers == ["printlab-audit.service"]
    assert " worker -Q audit -c 1 " in exec_start(UNITS / "printlab-audit.service")
    assert "printlab-beat" in beat_host and "printlab-audit" in beat_host
    assert "printlab-audit" not in app_host
    # The embedded lab's one worker takes it too
    run_worker = re.search(r"celery -A workers worker -Q (\S+)", (ROOT / "scripts" / "run").read_text())
    assert run_worker is not None and "audit" in run_worker.group(1).split(",")


def test_every_worker_unit_makes_its_own_prometheus_multiprocess_directory():
    # prometheus_client writes its multiprocess files in PROMETHEUS_MULTIPROC_DIR and raises FileNotFoundError
    # at import (lab/lib/metrics.py) when it does not exist; ProtectSystem=strict leaves /run read-only but
    # for a unit's own RuntimeDirectory=. One directory per unit: systemd removes it when that unit stops, and
    # a worker's metrics port empties it at start.
    # The web too: with GUNICORN_WORKERS > 1 and no directory, each scrape answered with the registry of the
    # one gunicorn worker that took it.
    workers = [path for path in SERVICES if " worker -Q " in exec_start(path)]
    workers.append(UNITS / "printlab-web.service")
    directories = {}
    for path in workers:
        service = parse_unit(path)["Service"]
        environment = dict(entry.split("=", 1) for entry in service["Environment"])
        (runtime,) = service["RuntimeDirectory"]
        assert service["RuntimeDirectoryMode"] == ["0700"], path.name
        assert environment["PROMETHEUS_MULTIPROC_DIR"] == f"/run/{runtime}", path.name
        directories[path.name] = runtime

    assert len(set(directories.values())) == len(workers), directories
    # The README's monitoring recipe names no directory of its own for the workers: the units set theirs
    assert "PROMETHEUS_MULTIPROC_DIR=/run/printlab-worker" not in (ROOT / "README.md").read_text()


def test_every_unit_but_the_migrations_refuses_to_start_on_an_unmigrated_schema():
    # After a failed printlab-migrate (orders/0009 stops an upgrade on purpose), a worker unit that was only
    # ordered After= it started on the old schema and failed the messages the other hosts' old version sent.
    # Requires=printlab-migrate.service would run the migrations on print and raster-only hosts, which hold
    # no owner credential; `migrate --check` reads django_migrations only, as the app role may.
    for path in SERVICES:
        if path.name == "printlab-migrate.service":
            continue
        service = parse_unit(path)["Service"]
        assert service.get("ExecStartPre") == ["/opt/printlab/.venv/bin/python manage.py migrate --check"], (
            path.name
        )
        credentials = {entry.split(":", 1)[0] for entry in service["LoadCredential"]}
        assert "database_owner_url" not in credentials, path.name
        assert "DATABASE_URL_FILE=%d/database_url" in service["Environment"], path.name


def test_the_web_does_not_depend_on_a_migration_run_that_retries_until_the_database_answers():
    # After a power cut the database host may still be booting when an app host starts: printlab-migrate
    # (a oneshot) failed once for good, and printlab-web, which Required it, failed as "Dependency failed" and
    # was never started again, while the workers (no Requires=, ExecStartPre= migrate --check, Restart=) came
    # back alone. Its own `migrate --check` (above) keeps the web off an unmigrated schema.
    migrate = parse_unit(UNITS / "printlab-migrate.service")["Service"]
    dependents = {
        path.name: key
        for path in SERVICES
        for key in ("Requires", "Requisite", "BindsTo")
        if "printlab-migrate.service" in " ".join(parse_unit(path)["Unit"].get(key, [])).split()
    }

    assert dependents == {}
    assert migrate["Type"] == ["oneshot"]
    assert (migrate["Restart"], migrate["RestartSec"]) == (["on-failure"], ["10"])


def test_a_migration_that_did_not_get_its_lock_in_time_is_not_run_again_and_again():
    # orders/0013 waits at most LOCK_TIMEOUT (5 s) for the lock of its ALTER TABLE, and exits with 75
    # (EX_TEMPFAIL: run it again later) when it was not granted. Restarted every 10 s while a backup held the
    # lock, each run queued every read of an order on the hosts still serving the previous version behind it.
    migrate = parse_unit(UNITS / "printlab-migrate.service")["Service"]

    assert migrate["Restart"] == ["on-failure"]
    assert migrate["RestartPreventExitStatus"] == ["75"]


def upgrade_commands() -> list[str]:
    """The shell commands of the ```sh blocks of deploy/README.md's Upgrading step 1, in order."""
    text = (ROOT / "deploy" / "README.md").read_text()
    section = text.split("\n## Upgrading\n", 1)[1].split("\n## ", 1)[0]
    step = section.split("\n1. ", 1)[1].split("\n2. ", 1)[0]
    commands = []
    for block in re.split(r"```(?:sh)?\n", step)[1::2]:
        for line in block.splitlines():
            command = line.split("#", 1)[0].strip()
            commands += [part.strip() for part in command.split("&&") if part.strip()]
    return commands


def test_the_upgrade_stops_the_hosts_units_before_it_changes_their_code():
    # Changed under running processes, gunicorn forked new workers (--max-requests, timeouts; no preload) on
    # the new code against the old schema, a Celery pool child imported a task module of the new version
    # beside its old ones, and pip replaced libraries under them: the units stop first, migrate at the start.
    commands = upgrade_commands()
    position = {command: index for index, command in enumerate(commands)}

    assert "systemctl stop printlab.target" in position, commands
    assert "systemctl start printlab.target" in position, commands
    stop, start = position["systemctl stop printlab.target"], position["systemctl start printlab.target"]
    changes = [
        index
        for index, command in enumerate(commands)
        if command.startswith(("git ", ".venv/bin/pip ", "cp "))
    ]
    assert {"git pull", ".venv/bin/pip install -r requirements.txt"} <= set(commands), commands
    assert changes and all(stop < index < start for index in changes), commands
    assert not any(command.startswith("systemctl restart") for command in commands), commands


def _gunicorn_settings() -> Any:
    """gunicorn.conf.py as gunicorn loads it (unknown names ignored, each hook checked for its arity)."""
    from gunicorn.app.base import Application

    class ConfigFileOnly(Application):  # type: ignore[misc]  # gunicorn has no types
        def load_config(self) -> None:
            self.load_config_from_file(str(ROOT / "gunicorn.conf.py"))

        def init(self, parser: Any, opts: Any, args: Any) -> None:
            return None

        def load(self) -> None:
            raise AssertionError("no app is loaded here")

    return ConfigFileOnly().cfg


def test_gunicorns_child_exit_marks_an_exited_worker_dead_in_the_multiprocess_directory(
    tmp_path, monkeypatch
):
    # A worker recycled by --max-requests leaves its files behind: its counters and histograms stay in the sum
    # a scrape adds up (in an archive file: the next test), its live gauges must go (prometheus_client's
    # mark_process_dead, which its docs ask gunicorn's child_exit to call).
    recorded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os\n"
            "from prometheus_client import Counter, Gauge\n"
            "Counter('printlab_test_requests', 'r').inc()\n"
            "Gauge('printlab_test_busy', 'b', multiprocess_mode='livesum').set(1)\n"
            "print(os.getpid())\n",
        ],
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    pid = int(recorded.stdout)
    files = {path.name for path in tmp_path.iterdir()}
    assert files == {f"counter_{pid}.db", f"gauge_livesum_{pid}.db"}
    settings = _gunicorn_settings()
    exited = types.SimpleNamespace(pid=pid)  # what gunicorn's arbiter passes: the exited Worker, with its pid

    # Without the variable (scripts/run, the tests' one-worker server) it touches nothing.
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    settings.child_exit(None, exited)
    assert {path.name for path in tmp_path.iterdir()} == files

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    settings.child_exit(None, exited)

    assert {path.name for path in tmp_path.glob("*.db")} == {"counter_archive.db"}
    registry = CollectorRegistry(auto_describe=False)
    MultiProcessCollector(registry, path=str(tmp_path))
    samples = {sample.name: sample.value for metric in registry.collect() for sample in metric.samples}
    assert samples == {"printlab_test_requests_total": 1.0}


def _multiprocess_totals(directory: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """What a scrape of `directory` answers: every sample by name and labels."""
    registry = CollectorRegistry(auto_describe=False)
    MultiProcessCollector(registry, path=str(directory))
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for metric in registry.collect()
        for sample in metric.samples
    }


def test_gunicorns_child_exit_folds_exited_workers_counters_and_histograms_into_one_archive_file_per_type(
    tmp_path, monkeypatch
):
    # mark_process_dead removes live gauges only (prometheus/client_python#568): without more, every worker
    # recycled by --max-requests left counter_<pid>.db and histogram_<pid>.db in /run/printlab-web until the
    # unit stopped, and every scrape read them all (thousands of files: seconds a scrape). child_exit folds
    # them into one archive per type, and a scrape adds up the same totals as before.
    pids = []
    for worker in range(3):
        recorded = subprocess.run(
            [
                sys.executable,
                "-c",
                "import os, sys\n"
                "from prometheus_client import Counter, Histogram\n"
                "n = int(sys.argv[1])\n"
                "c = Counter('printlab_test_requests', 'r', ['route'])\n"
                "c.labels('orders').inc(n + 1)\n"
                "c.labels(f'only-{n}').inc()\n"
                "h = Histogram('printlab_test_seconds', 's', ['route'], buckets=(0.25, 1.0, 4.0))\n"
                "for seconds in (0.125, 0.5 * n, 2.0 + n, 8.0):\n"
                "    h.labels('orders').observe(seconds)\n"
                "h.labels(f'only-{n}').observe(0.5)\n"
                "print(os.getpid())\n",
                str(worker),
            ],
            env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        pids.append(int(recorded.stdout))
    assert {path.name for path in tmp_path.glob("*.db")} == {
        f"{typ}_{pid}.db" for typ in ("counter", "histogram") for pid in pids
    }
    before = _multiprocess_totals(tmp_path)
    assert before[("printlab_test_requests_total", (("route", "orders"),))] == 6.0
    assert before[("printlab_test_seconds_count", (("route", "orders"),))] == 12.0
    assert before[("printlab_test_seconds_bucket", (("le", "1.0"), ("route", "orders")))] == 6.0

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    settings = _gunicorn_settings()
    for exited, pid in enumerate(pids, start=1):
        settings.child_exit(None, types.SimpleNamespace(pid=pid))
        # After each merge, not only the last: the archive is read as any other file of the directory.
        assert {path.name for path in tmp_path.glob("*.db")} == {
            "counter_archive.db",
            "histogram_archive.db",
        } | {f"{typ}_{running}.db" for typ in ("counter", "histogram") for running in pids[exited:]}
        assert _multiprocess_totals(tmp_path) == before


def test_the_env_example_loads_in_bash_with_the_values_systemd_reads():
    # deploy/printlab-manage loads the environment file with bash (`set -a; . printlab.env`): an unquoted
    # `LAB_NAME=Print Lab` ran a command `Lab` there ("Lab: command not found") and left LAB_NAME unset.
    loaded = subprocess.run(
        ["bash", "-c", "set -a; . deploy/printlab.env.example"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    dumped = subprocess.run(
        [
            "bash",
            "-c",
            f"set -a; . deploy/printlab.env.example; exec {sys.executable} -c "
            "'import json, os; print(json.dumps(dict(os.environ)))'",
        ],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    assert (loaded.returncode, loaded.stderr) == (0, "")
    environment = json.loads(dumped.stdout)
    assert {name: environment.get(name) for name in env_example()} == env_example()
    assert env_example()["LAB_NAME"] == "Print Lab"


def architecture_picture() -> str:
    text = (ROOT / "README.md").read_text()
    return text.split("\n## Architecture\n", 1)[1].split("```\n", 1)[1].split("```", 1)[0]


def test_the_readme_architecture_picture_names_every_queue_the_workers_consume():
    # It named raster, print.<host> and default only: webhooks, fetch and audit have workers of their own.
    celery = (ROOT / "lab" / "celery.py").read_text()
    queues = set(re.findall(r'Queue\("(\w+)"\)', celery))
    picture = architecture_picture()
    listed = picture.split("workers/ (", 1)[1].split(")", 1)[0]
    names = set(re.findall(r"[\w.<>]+", listed))

    assert queues == {"default", "raster", "print", "webhooks", "fetch", "audit"}
    # `print` is the queue of printers without a host; the picture shows the hosts' print.<host>
    assert {queue for queue in queues if queue not in names and f"{queue}.<host>" not in names} == set()


def test_every_host_whose_units_need_the_blob_store_makes_it_at_install():
    # printlab-print@ and printlab-raster list it in ReadWritePaths= without "-": a print or raster host
    # without it fails their start (226/NAMESPACE), and the install said "app hosts".
    storage = env_example()["LAB_STORAGE_DIR"]
    needing = {
        path.name
        for path in SERVICES
        for value in parse_unit(path)["Service"].get("ReadWritePaths", [])
        if storage in value.split()
    }
    assert {"printlab-print@.service", "printlab-raster.service", "printlab-web.service"} <= needing
    (makes,) = [line for line in install_commands() if storage in line.split("#", 1)[0].split()]
    comment = makes.split("#", 1)[1]

    assert all(host in comment for host in ("app", "raster", "print")), makes


def test_metrics_token_is_an_optional_credential_of_the_web_given_by_a_drop_in():
    # /metrics answers 404 without METRICS_TOKEN; a credential a unit names and the host lacks stops the unit,
    # so no unit names it and deploy/README.md gives the drop-in.
    readme = (ROOT / "deploy" / "README.md").read_text()

    assert "LoadCredential=metrics_token:/etc/printlab/credentials/metrics_token" in readme
    assert "Environment=METRICS_TOKEN_FILE=%d/metrics_token" in readme
    assert "`metrics_token`" in readme.split("Secrets are systemd credentials", 1)[1].split("\n\n", 1)[0]
    assert not [path.name for path in SERVICES if "metrics_token" in path.read_text()]


def _printers_sync_warnings(server: str, *arguments: str) -> str:
    stderr = io.StringIO()
    call_command("printers_sync", "--server", server, *arguments, stdout=io.StringIO(), stderr=stderr)
    return stderr.getvalue()


@pytest.mark.django_db
def test_printers_sync_outside_demo_mode_warns_of_printers_it_creates_without_a_host(settings):
    # From a shell PRINT_HOST is unset (printlab-print@ alone sets it): printers imported there got no host,
    # their jobs went to queue 'print', which no unit consumes, and waited `ready` with nothing said.
    settings.PRINT_HOST = ""
    warnings = {}
    with PrivateCups() as cups_server:
        cups_server.add_printer("photo_small", media=["na_index-4x6_4x6in"])
        cups_server.add_printer("photo_large", media=["na_govt-letter_8x10in"])
        settings.DEMO_SECRETS = False
        warnings["without a host"] = _printers_sync_warnings(cups_server.server)
        warnings["again, nothing created"] = _printers_sync_warnings(cups_server.server)
        Printer.objects.all().delete()
        warnings["with a host"] = _printers_sync_warnings(cups_server.server, "--host", "alpha")
        Printer.objects.all().delete()
        settings.DEMO_SECRETS = True
        warnings["demo mode"] = _printers_sync_warnings(cups_server.server)

    assert warnings == {
        "without a host": "created without a host: photo-large, photo-small: their jobs go to queue 'print',"
        " which no reference-deployment unit consumes; import them with --server <print host>:631"
        " --host <name>, or give each its host in the lab admin\n",
        "again, nothing created": "",
        "with a host": "",
        "demo mode": "",
    }
