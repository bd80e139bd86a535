"""Settings refuse to guess: outside demo mode a missing key stops the process, keys may come from files,
booleans are strict, and importing settings writes nothing. Each case imports settings in a fresh process."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path

import pytest

from tests.support.settings_import import settings_imported

SECRETS = ("SECRET_KEY", "LAB_MASTER_KEY", "AUDIT_SIGNING_KEY", "AUDIT_RECORD_KEY")
VALUES = {
    "SECRET_KEY": "s" * 50,
    "LAB_MASTER_KEY": "k1:" + "A" * 43 + "=",
    "AUDIT_SIGNING_KEY": "B" * 43 + "=",
    "AUDIT_RECORD_KEY": "C" * 43 + "=",
}
READ_BACK = (
    "import json, lab.settings as s; print(json.dumps({'SECRET_KEY': s.SECRET_KEY, "
    "'LAB_MASTER_KEY': ','.join(s.LAB_MASTER_KEYS), 'AUDIT_SIGNING_KEY': s.AUDIT_SIGNING_KEY, "
    "'AUDIT_RECORD_KEY': s.AUDIT_RECORD_KEY, 'SECURE_COOKIES': s.SECURE_COOKIES, "
    "'STRIPE_WEBHOOK_SECRET': s.STRIPE_WEBHOOK_SECRET, 'EMAIL_BACKEND': s.EMAIL_BACKEND, "
    "'SITE_URL': s.SITE_URL}))"
)
SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
FILE_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
SITE_URL = "https://lab.example.com"


def import_settings(var_dir: Path, **environment: str) -> subprocess.CompletedProcess[str]:
    """`import lab.settings` in a new process with the test command's keys and demo switch removed, and the
    SMTP mail backend and an https SITE_URL named (outside demo mode both must be) unless `environment` names
    others ("": none)."""
    return settings_imported(
        var_dir,
        READ_BACK,
        {"EMAIL_BACKEND": SMTP_BACKEND, "SITE_URL": SITE_URL, **environment},
        unset=("LAB_DEMO_SECRETS",),
        unset_prefixes=(*SECRETS, "SECURE_"),
    )


def read_back(completed: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert completed.returncode == 0, completed.stderr[-2000:]
    return dict(json.loads(completed.stdout))


@pytest.mark.parametrize("missing", SECRETS)
def test_a_missing_secret_stops_the_process_naming_it_and_how_to_make_one(tmp_path, missing):
    # given every key but one, and no demo switch
    environment = {name: value for name, value in VALUES.items() if name != missing}

    completed = import_settings(tmp_path / "var", **environment)

    assert completed.returncode != 0
    last_line = completed.stderr.strip().splitlines()[-1]
    assert last_line.startswith(f"django.core.exceptions.ImproperlyConfigured: {missing} is not set.")
    assert f"{missing}_FILE" in last_line
    assert "generate one with: python3 -c" in last_line
    assert not (tmp_path / "var").exists()


def test_all_secrets_given_settings_import_writes_nothing(tmp_path):
    # given the embedded defaults otherwise (SQLite and the filesystem broker under the var dir)
    environment = {key: value for key, value in VALUES.items()}

    values = read_back(
        import_settings(tmp_path / "var", DATABASE_URL="", CELERY_BROKER_URL="", **environment)
    )

    assert {name: values[name] for name in SECRETS} == VALUES
    assert not (tmp_path / "var").exists()


def test_each_secret_can_come_from_a_file_without_its_trailing_newline(tmp_path):
    environment = {}
    for name, value in {**VALUES, "STRIPE_WEBHOOK_SECRET": "whsec_from_file"}.items():
        path = tmp_path / name.lower()
        path.write_text(value + "\n")
        environment[f"{name}_FILE"] = str(path)

    values = read_back(import_settings(tmp_path / "var", STRIPE_WEBHOOK_SECRET="", **environment))

    assert {name: values[name] for name in SECRETS} == VALUES
    assert values["STRIPE_WEBHOOK_SECRET"] == "whsec_from_file"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"SECRET_KEY": "x" * 50}, "Set SECRET_KEY or SECRET_KEY_FILE, not both."),
        (
            {"SECRET_KEY_FILE": "/nonexistent/secret_key"},
            "SECRET_KEY_FILE=/nonexistent/secret_key: cannot read it",
        ),
    ],
)
def test_an_ambiguous_or_unreadable_secret_file_stops_the_process(tmp_path, extra, message):
    key_file = tmp_path / "secret_key"
    key_file.write_text("y" * 50)
    environment = {**VALUES, "SECRET_KEY_FILE": str(key_file)}
    environment.pop("SECRET_KEY")

    completed = import_settings(tmp_path / "var", **{**environment, **extra})

    assert completed.returncode != 0
    assert f"ImproperlyConfigured: {message}" in completed.stderr


def test_demo_mode_generates_the_keys_once_and_keeps_them(tmp_path):
    var_dir = tmp_path / "var"

    first = read_back(import_settings(var_dir, LAB_DEMO_SECRETS="true"))
    second = read_back(import_settings(var_dir, LAB_DEMO_SECRETS="true"))

    assert first == second
    assert len(str(first["SECRET_KEY"])) >= 50
    assert str(first["LAB_MASTER_KEY"]).startswith("k1:")
    files = ["audit_record_key", "audit_signing_key", "master_key", "secret_key"]
    assert sorted(path.name for path in var_dir.iterdir() if path.is_file()) == files
    assert {stat.S_IMODE((var_dir / name).stat().st_mode) for name in files} == {0o600}


@pytest.mark.parametrize(
    ("backend", "message"),
    [
        ("", "EMAIL_BACKEND is not set. Set EMAIL_BACKEND=django.core.mail.backends.smtp.EmailBackend"),
        (FILE_BACKEND, f"EMAIL_BACKEND={FILE_BACKEND} keeps every customer's e-mail in plaintext on disk"),
        (
            "django.core.mail.backends.console.EmailBackend",
            "EMAIL_BACKEND=django.core.mail.backends.console.EmailBackend writes every customer's e-mail",
        ),
    ],
    ids=["unset", "file", "console"],
)
def test_outside_demo_mode_a_mail_backend_must_be_named_and_never_the_file_one(tmp_path, backend, message):
    """The file backend keeps every message (addresses, tracking numbers, receipts' bearer links) in plaintext
    under var/mail. Before, it was the default on every host, demo or not, and nothing ever deleted them."""
    completed = import_settings(tmp_path / "var", EMAIL_BACKEND=backend, **VALUES)

    assert completed.returncode != 0
    last_line = completed.stderr.strip().splitlines()[-1]
    assert last_line.startswith(f"django.core.exceptions.ImproperlyConfigured: {message}")
    assert not (tmp_path / "var").exists()


def test_demo_mode_writes_mail_to_files_unless_told_otherwise_and_any_mode_takes_a_named_backend(tmp_path):
    demo = read_back(import_settings(tmp_path / "demo", LAB_DEMO_SECRETS="true", EMAIL_BACKEND=""))
    named = read_back(import_settings(tmp_path / "var", EMAIL_BACKEND=SMTP_BACKEND, **VALUES))

    assert demo["EMAIL_BACKEND"] == FILE_BACKEND
    assert named["EMAIL_BACKEND"] == SMTP_BACKEND


@pytest.mark.parametrize("word", ["ture", "enabled", "", "2"])
def test_a_boolean_that_is_not_one_stops_the_process_naming_it(tmp_path, word):
    completed = import_settings(tmp_path / "var", SECURE_COOKIES=word, **VALUES)

    assert completed.returncode != 0
    assert f"ImproperlyConfigured: SECURE_COOKIES={word!r} is not a boolean" in completed.stderr


@pytest.mark.parametrize(
    ("word", "expected"), [("TRUE", True), ("yes", True), ("On", True), ("0", False), ("off", False)]
)
def test_booleans_accept_the_usual_words_in_any_case(tmp_path, word, expected):
    values = read_back(import_settings(tmp_path / "var", SECURE_COOKIES=word, **VALUES))

    assert values["SECURE_COOKIES"] is expected


def test_a_trusted_proxy_that_is_not_an_address_stops_the_process(tmp_path):
    completed = import_settings(tmp_path / "var", TRUSTED_PROXIES="10.0.0.2,proxy.internal", **VALUES)

    assert completed.returncode != 0
    assert "ImproperlyConfigured: TRUSTED_PROXIES: 'proxy.internal' is not an IP address" in completed.stderr


@pytest.mark.parametrize(
    ("site_url", "message"),
    [
        ("", "SITE_URL is not set. Set SITE_URL to the lab's public https:// address"),
        ("http://lab.example.com", "SITE_URL='http://lab.example.com' is not an https:// address"),
        ("https://", "SITE_URL='https://' is not an https:// address"),
    ],
    ids=["unset", "http", "no-host"],
)
def test_outside_demo_mode_the_site_url_must_be_set_and_https(tmp_path, site_url, message):
    """Every e-mailed receipt link (its bearer token in the URL) is built from SITE_URL. Before, a host
    without it mailed links to http://127.0.0.1:8000, and an http:// one sent the tokens in cleartext."""
    completed = import_settings(tmp_path / "var", SITE_URL=site_url, **VALUES)

    assert completed.returncode != 0
    last_line = completed.stderr.strip().splitlines()[-1]
    assert last_line.startswith(f"django.core.exceptions.ImproperlyConfigured: {message}")
    assert not (tmp_path / "var").exists()


def test_an_https_site_url_starts_and_demo_mode_keeps_the_local_default(tmp_path):
    named = read_back(import_settings(tmp_path / "var", SITE_URL="https://prints.example.net", **VALUES))
    demo = read_back(import_settings(tmp_path / "demo", LAB_DEMO_SECRETS="true", SITE_URL=""))

    assert named["SITE_URL"] == "https://prints.example.net"
    assert demo["SITE_URL"] == "http://127.0.0.1:8000"
