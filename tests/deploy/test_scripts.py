"""The test command's own shell (scripts/test, and the venv block scripts/run shares): the blocks between its
`# >>> name` and `# <<< name` markers, and its cleanup(), run for real by bash in a temporary folder, with
stand-ins only for what cannot run here (`runuser`, and a PostgreSQL that wants a password over TCP)."""

from __future__ import annotations

import os
import re
import select
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from tests.support.embedded import embedded_env

ROOT = Path(__file__).resolve().parents[2]

# What scripts/test runs over the local socket as the OS user postgres (`runuser -u postgres -- psql …`).
PSQL_AS_POSTGRES = "runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p 5432 -d postgres"

RUNUSER_STANDIN = """#!/bin/sh
[ "$1 $2 $3" = "-u postgres --" ] || { echo "runuser: unexpected $*" >&2; exit 99; }
shift 3
printf 'runuser -u postgres -- ' >> "$FAKE_PSQL_LOG"
exec "$@"
"""
# Logs its arguments and its SQL; refuses CREATE ROLE when FAKE_PSQL_ROLE_EXISTS is set, as PostgreSQL does
# for a role that is already there. A TCP login as printlab_test (the role an earlier scripts/test made, with
# the password it published) succeeds only with that password and when FAKE_PSQL_PUBLISHED_LOGIN is set.
PSQL_STANDIN = """#!/bin/sh
sql=$(cat)
printf 'psql %s\\n%s\\n' "$*" "$sql" >> "$FAKE_PSQL_LOG"
case " $* " in
  *" -h 127.0.0.1 "*" -U printlab_test "*)
    [ -n "${FAKE_PSQL_PUBLISHED_LOGIN:-}" ] && [ "${PGPASSWORD:-}" = printlab-test-only ] && exit 0
    echo 'psql: error: FATAL:  password authentication failed for user "printlab_test"' >&2
    exit 2 ;;
esac
if [ -n "${FAKE_PSQL_ROLE_EXISTS:-}" ] && printf '%s' "$sql" | grep -q 'CREATE ROLE'; then
  echo 'ERROR:  role already exists' >&2
  exit 3
fi
"""


def script_block(name: str, script: str = "test") -> str:
    text = (ROOT / "scripts" / script).read_text()
    match = re.search(rf"^# >>> {name} .*?\n(.*?)^# <<< {name}\n", text, re.DOTALL | re.MULTILINE)
    assert match, f"scripts/{script} has no `# >>> {name}` … `# <<< {name}` block"
    return match.group(1)


def script_cleanup() -> str:
    match = re.search(r"^cleanup\(\) \{\n.*?^\}\n", (ROOT / "scripts" / "test").read_text(), re.DOTALL | re.M)
    assert match, "scripts/test has no cleanup() function"
    return match.group(0)


def bash(code: str, *, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + code],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def script_with_cleanup(then: str) -> str:
    """The script's background and role blocks and its cleanup(), trapped at exit as the script does."""
    return "\n".join(
        [
            script_block("background jobs"),
            script_block("test role"),
            "started=()",
            script_cleanup(),
            "trap cleanup EXIT",
            then,
        ]
    )


def exits_within(pid: int, seconds: float) -> bool:
    """Whether process `pid` (not our child) is gone or exits within `seconds`: its pidfd turns readable."""
    try:
        descriptor = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([descriptor], [], [], seconds)
        return bool(readable)
    finally:
        os.close(descriptor)


def test_a_venv_left_without_pip_is_built_anew_and_a_whole_one_is_kept(tmp_path: Path) -> None:
    # given: what a first build cut short during ensurepip leaves: a python (symlinked), no pip
    subprocess.run(["python3", "-m", "venv", "--without-pip", ".venv"], cwd=tmp_path, check=True)
    assert (tmp_path / ".venv" / "bin" / "python").is_symlink()
    assert not (tmp_path / ".venv" / "bin" / "pip").exists()
    block = script_block("venv")

    # when
    rebuilt = bash(block, cwd=tmp_path)

    # then: a venv whose pip runs
    assert rebuilt.returncode == 0, rebuilt.stderr
    pip = subprocess.run([tmp_path / ".venv" / "bin" / "pip", "--version"], capture_output=True, text=True)
    assert pip.returncode == 0
    assert f"from {tmp_path / '.venv'}" in pip.stdout
    # and a whole venv is left as it is on the next run
    (tmp_path / ".venv" / "kept").touch()
    again = bash(block, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / ".venv" / "kept").exists()


def test_the_run_command_checks_its_venv_as_the_test_command_does() -> None:
    assert script_block("venv", script="run") == script_block("venv")


def test_a_failing_step_stops_the_background_job_and_what_it_runs(tmp_path: Path) -> None:
    # given: a background job (as the compile job runs compileall, then pip) that runs a child, and a step
    # after it that fails under `set -e`, as ruff, lint-imports or mypy may
    os.mkfifo(tmp_path / "started")
    code = script_with_cleanup(
        """
background_start bash -c 'exec >/dev/null 2>&1; sleep 30 & echo $! > started; wait'
read -r child < started
echo "$child"
false
echo "not reached"
"""
    )

    # when
    result = bash(code, cwd=tmp_path)

    # then: the job's child is gone too
    child = int(result.stdout.split()[0])
    try:
        assert (result.returncode, result.stdout.split()) == (1, [str(child)])
        assert exits_within(child, 10)
    finally:
        if not exits_within(child, 0):
            os.kill(child, signal.SIGKILL)


def test_a_background_job_once_waited_for_is_not_signalled_at_exit(tmp_path: Path) -> None:
    # given: a job that ended and was waited for (its PID free for another process by the time of exit);
    # `kill` records instead of signalling
    code = script_with_cleanup(
        """
kill() { echo "kill $*" >> kills.log; }
background_start true
background_wait
echo "the steps after it"
"""
    )

    # when
    result = bash(code, cwd=tmp_path)

    # then
    assert (result.returncode, result.stdout) == (0, "the steps after it\n")
    assert not (tmp_path / "kills.log").exists()


# The login an earlier scripts/test left: printlab_test, superuser, with a password published in this repo.
PUBLISHED_LOGIN = "psql -X -w -Atq -h 127.0.0.1 -p 5432 -U printlab_test -d postgres -c SELECT 1\n\n"
PUBLISHED_ROLE_RETIRED = "ALTER ROLE printlab_test NOLOGIN NOSUPERUSER PASSWORD NULL;\n"


def fake_postgres_bin(tmp_path: Path) -> dict[str, str]:
    bin_folder = tmp_path / "bin"
    bin_folder.mkdir()
    for name, text in {"runuser": RUNUSER_STANDIN, "psql": PSQL_STANDIN}.items():
        (bin_folder / name).write_text(text)
        (bin_folder / name).chmod(0o755)
    assert shutil.which("python3"), "the role's name and password come from python3"
    return {"PATH": f"{bin_folder}:{os.environ['PATH']}", "FAKE_PSQL_LOG": str(tmp_path / "psql.log")}


def test_each_run_makes_a_role_of_its_own_with_a_fresh_password_and_drops_it_at_exit(tmp_path: Path) -> None:
    # given: a PostgreSQL that wants a password over TCP (psql stands in for it)
    env = fake_postgres_bin(tmp_path)
    code = script_with_cleanup('test_role_create\necho "role=$TEST_ROLE password=$TEST_ROLE_PASSWORD"')

    # when: two runs
    runs = []
    for _ in range(2):
        result = bash(code, cwd=tmp_path, env=env)
        assert result.returncode == 0, result.stderr
        match = re.search(r"^role=(\S+) password=(\S+)$", result.stdout, re.MULTILINE)
        assert match, result.stdout
        role, password = match.groups()
        runs.append((role, password, (tmp_path / "psql.log").read_text()))
        (tmp_path / "psql.log").unlink()

    # then: each run created its own role with its own password (nothing altered), and dropped it at exit
    # with the test databases it owns
    (first_role, first_password, _), (second_role, second_password, _) = runs
    assert (first_role != second_role, first_password != second_password) == (True, True)
    for role, password, log in runs:
        assert re.fullmatch(r"printlab_test_[0-9a-f]{8}", role)
        assert re.fullmatch(r"[A-Za-z0-9_-]{32}", password)
        assert log == (
            PUBLISHED_LOGIN + f"{PSQL_AS_POSTGRES}\n"
            f"CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '{password}';\n"
            f"{PSQL_AS_POSTGRES}\n"
            "SELECT format('DROP DATABASE %I', datname) FROM pg_database\n"
            f"  WHERE datdba = (SELECT oid FROM pg_roles WHERE rolname = '{role}') \\gexec\n"
            f"DROP ROLE IF EXISTS {role};\n"
        )


def test_a_role_already_there_is_neither_altered_nor_dropped(tmp_path: Path) -> None:
    # given: PostgreSQL refuses to create the role: one of that name is there, not made by this run
    env = {**fake_postgres_bin(tmp_path), "FAKE_PSQL_ROLE_EXISTS": "1"}
    code = script_with_cleanup('test_role_create\necho "not reached"')

    # when
    result = bash(code, cwd=tmp_path, env=env)

    # then: the run stops, saying so; the role got one CREATE ROLE, which failed, and nothing else
    assert result.returncode == 1
    assert "not reached" not in result.stdout
    log = (tmp_path / "psql.log").read_text()
    (role,) = re.findall(r"^CREATE ROLE (\S+) LOGIN SUPERUSER PASSWORD '[^']+';$", log, re.MULTILINE)
    assert f"== could not create role {role} (already there?): left as it is" in result.stderr
    assert log.count(PSQL_AS_POSTGRES) == 1
    assert "ALTER" not in log and "DROP" not in log


def test_the_role_an_earlier_version_left_with_its_published_password_is_retired_before_the_run(
    tmp_path: Path,
) -> None:
    # given: PostgreSQL wants a password over TCP, and takes printlab_test's published one (an earlier
    # scripts/test made that superuser, and it stayed after the script no longer made it)
    env = {**fake_postgres_bin(tmp_path), "FAKE_PSQL_PUBLISHED_LOGIN": "1"}
    code = script_with_cleanup('test_role_create\necho "role=$TEST_ROLE"')

    # when
    result = bash(code, cwd=tmp_path, env=env)

    # then: it can no longer log in, which the run says; then the run makes and drops its own role as ever
    assert result.returncode == 0, result.stderr
    (role,) = re.findall(r"^role=(printlab_test_[0-9a-f]{8})$", result.stdout, re.MULTILINE)
    assert (
        "== role printlab_test (made by an earlier scripts/test, its password published in the repo) "
        "logged in over TCP: retired (NOLOGIN NOSUPERUSER, no password)"
    ) in result.stderr
    log = (tmp_path / "psql.log").read_text()
    assert log.startswith(
        PUBLISHED_LOGIN + f"{PSQL_AS_POSTGRES}\n" + PUBLISHED_ROLE_RETIRED + f"{PSQL_AS_POSTGRES}\n"
    )
    assert log.count(PSQL_AS_POSTGRES) == 3  # retired, created, dropped
    assert f"CREATE ROLE {role} LOGIN SUPERUSER PASSWORD" in log and f"DROP ROLE IF EXISTS {role};" in log
    assert "DROP ROLE IF EXISTS printlab_test;" not in log


def test_a_printlab_test_role_that_does_not_take_the_published_password_is_left_as_it_is(
    tmp_path: Path,
) -> None:
    # given: no login as printlab_test with the published password (no such role, or not with that password)
    env = fake_postgres_bin(tmp_path)
    code = script_with_cleanup("test_role_create")

    # when
    result = bash(code, cwd=tmp_path, env=env)

    # then: the login was tried, and nothing was done to printlab_test
    assert result.returncode == 0, result.stderr
    log = (tmp_path / "psql.log").read_text()
    assert log.startswith(PUBLISHED_LOGIN + f"{PSQL_AS_POSTGRES}\nCREATE ROLE printlab_test_")
    assert "printlab_test " not in log.replace(PUBLISHED_LOGIN, "")
    assert "ALTER" not in log and "retired" not in result.stderr


def test_the_run_command_names_the_process_that_stopped_shows_its_log_and_stops_the_others(
    tmp_path: Path,
) -> None:
    # given: the run command's processes, one of which stops at once as gunicorn does on a port already taken
    code = "\n".join(
        [
            script_block("supervise", script="run"),
            "mkdir -p var/log",
            "start worker sleep 60",
            'echo "${pids[0]}" > worker.pid',
            "start web bash -c 'echo \"[ERROR] Connection in use: (127.0.0.1, 8000)\"; exit 3'",
            "supervise",
        ]
    )

    # when
    result = bash(code, cwd=tmp_path)

    # then: its status, its name and the end of its log, and the other process is stopped
    assert result.returncode == 3
    assert "== web stopped (exit 3), so the lab stops too; the end of var/log/web.log:" in result.stderr
    assert "Connection in use" in result.stderr
    assert "worker stopped" not in result.stderr
    assert exits_within(int((tmp_path / "worker.pid").read_text()), 10)


def test_a_process_that_exits_cleanly_still_stops_the_run_with_a_failure(tmp_path: Path) -> None:
    # given: a process of the lab that ends with status 0 (told to shut down) while the others run
    code = "\n".join(
        [
            script_block("supervise", script="run"),
            "mkdir -p var/log",
            "start worker sleep 60",
            "start beat true",
        ]
    )

    # when
    result = bash(code + "\nsupervise", cwd=tmp_path)

    # then: the lab is not running, so the run command does not report success
    assert result.returncode == 1
    assert "== beat stopped (exit 0)" in result.stderr


def test_a_process_that_stopped_before_the_run_watched_it_is_still_reported(tmp_path: Path) -> None:
    # given: a process that stops at once (a port already taken) and is gone before the run starts watching
    code = "\n".join(
        [
            script_block("supervise", script="run"),
            "mkdir -p var/log",
            "start worker sleep 30",
            "start web sh -c 'echo address already in use; exit 3'",
            "sleep 1",
        ]
    )

    # when
    result = bash(code + "\nsupervise", cwd=tmp_path)

    # then: it is named with its status, and the others are stopped at once (before, `wait -n` answered "no
    # such job" for it, waited for the worker instead and the run exited 130 with no word of why)
    assert result.returncode == 3
    assert "== web stopped (exit 3)" in result.stderr
    assert "address already in use" in result.stderr
    assert "no such job" not in result.stderr


def allowed_hosts_for(
    lab_host: str, allowed_hosts: str = "", path: str | None = None
) -> tuple[str, list[str]]:
    result = bash(
        script_block("host", script="run") + '\necho "$LOCAL_HOST|$ALLOWED_HOSTS"',
        cwd=ROOT,
        env={"LAB_HOST": lab_host, "ALLOWED_HOSTS": allowed_hosts, **({"PATH": path} if path else {})},
    )
    assert result.returncode == 0, result.stderr
    local_host, hosts = result.stdout.strip().split("|")
    return local_host, hosts.split(",")


def test_a_wildcard_bind_is_called_on_loopback_and_answers_to_this_machines_addresses() -> None:
    # when: LAB_HOST=0.0.0.0, to reach the lab from another machine, and ALLOWED_HOSTS is not set
    local_host, hosts = allowed_hosts_for("0.0.0.0")

    # then: localstripe's webhooks go to loopback (before, to http://0.0.0.0:…, a Host Django refused), and
    # every address of this machine is a Host the lab answers (before, other machines got 400s only)
    assert local_host == "127.0.0.1"
    assert {"localhost", "127.0.0.1", "[::1]"} <= set(hosts)
    addresses = subprocess.run(["hostname", "-I"], capture_output=True, text=True, check=True).stdout.split()
    assert addresses
    assert {f"[{a}]" if ":" in a else a for a in addresses} <= set(hosts)
    assert len(hosts) == len(set(hosts))


def test_a_named_bind_is_allowed_and_an_allowed_hosts_setting_is_left_as_it_is() -> None:
    assert allowed_hosts_for("192.0.2.7") == ("192.0.2.7", ["localhost", "127.0.0.1", "[::1]", "192.0.2.7"])
    assert allowed_hosts_for("::")[0] == "[::1]"
    assert allowed_hosts_for("0.0.0.0", allowed_hosts="lab.example.com") == ("127.0.0.1", ["lab.example.com"])


def web_arguments(env: dict[str, str], lab_host: str = "127.0.0.1") -> list[str]:
    """The run command's gunicorn arguments in exactly `env` (not this process's environment, whose
    CELERY_BROKER_URL would take the lab off the embedded defaults)."""
    code = (
        f"HOST={lab_host} PORT=8000\n"
        # this interpreter for the venv's: a checkout may have no .venv of its own
        + script_block("web", script="run").replace(".venv/bin/python", shlex.quote(sys.executable))
        + '\nprintf "%s\\n" "${web[@]}" "$BIND"'
    )
    result = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_without_a_redis_cache_the_run_command_starts_one_web_process_so_limits_count_once(
    tmp_path: Path,
) -> None:
    # given: the embedded defaults (no CACHE_URL, the filesystem broker): the cache is each process's memory
    env = {k: v for k, v in embedded_env(tmp_path).items() if k not in ("WEB_WORKERS", "WEB_THREADS")}

    # then: one process with threads (before, two processes each counted sign-in failures and throttles)
    assert web_arguments(env) == ["--workers", "1", "--threads", "4", "127.0.0.1:8000"]
    # and with a Redis cache the processes share the counts: two processes, as before
    shared = {**env, "CACHE_URL": "redis://127.0.0.1:6379/15"}
    assert web_arguments(shared, lab_host="::") == ["--workers", "2", "[::]:8000"]


# Says it is ready (a file `<name>.ready`) once its handler is in place: the Ctrl-C then stops it at once.
EXITS_ON_SIGINT = (
    "import pathlib, signal, sys, time; signal.signal(signal.SIGINT, lambda *_: sys.exit(0));"
    " pathlib.Path('{name}.ready').touch(); time.sleep(60)"
)


def exits_on_sigint(name: str) -> str:
    return shlex.quote(EXITS_ON_SIGINT.format(name=name))


def test_ctrl_c_stops_every_process_of_the_run_without_reporting_one_as_stopped(tmp_path: Path) -> None:
    # given: the run command's processes, in a process group of their own as in a terminal
    code = "\n".join(
        [
            script_block("supervise", script="run"),
            "mkdir -p var/log",
            # as each process of the lab does: its own SIGINT handler (localstripe's exits 0 on it)
            *(
                f"start {name} {sys.executable} -c {exits_on_sigint(name)}"
                for name in ("worker", "localstripe")
            ),
            'echo "${pids[@]}" > pids',
            "supervise",
        ]
    )
    run = subprocess.Popen(
        ["bash", "-c", "set -euo pipefail\n" + code],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        for _ in range(100):
            ready = all((tmp_path / f"{name}.ready").exists() for name in ("worker", "localstripe"))
            if ready and (tmp_path / "pids").read_text().strip():
                break
            select.select([], [], [], 0.05)
        pids = [int(pid) for pid in (tmp_path / "pids").read_text().split()]

        # when: Ctrl-C, which the terminal sends to the whole group (each process stops on it, some before
        # the run command has handled its own)
        os.killpg(run.pid, signal.SIGINT)
        _, stderr = run.communicate(timeout=30)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)

    # then: the run exits as interrupted, says no process "stopped" (before: "localstripe stopped (exit 0),
    # so the lab stops too" on every Ctrl-C), and leaves none running
    assert run.returncode == 130, stderr
    assert "stopped" not in stderr
    assert all(exits_within(pid, 10) for pid in pids)


def test_a_wildcard_bind_works_on_a_machine_without_the_hostname_command(tmp_path: Path) -> None:
    # given: a PATH with what the block needs but no `hostname` (trimmed images, Fedora and Arch containers)
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("bash", "cat", "awk", "paste", "printf", "timeout"):
        found = shutil.which(tool)
        if found:
            (tools / tool).symlink_to(found)
    assert shutil.which("hostname", path=str(tools)) is None

    # when
    local_host, hosts = allowed_hosts_for("0.0.0.0", path=str(tools))

    # then: the run goes on (before: exit 127 with nothing started), with loopback and the kernel's name
    assert local_host == "127.0.0.1"
    assert {"localhost", "127.0.0.1", "[::1]"} <= set(hosts)
    assert Path("/proc/sys/kernel/hostname").read_text().strip() in hosts
