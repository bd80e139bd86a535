"""Outgoing mail may use TLS and a login (the password also from a file), and outside demo mode an SMTP server
off this machine is refused unless the mail to it is encrypted or plaintext is allowed by name. Each case
imports settings in a fresh process."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.support.settings_import import settings_imported

KEYS = {
    "SECRET_KEY": "s" * 50,
    "LAB_MASTER_KEY": "k1:" + "A" * 43 + "=",
    "AUDIT_SIGNING_KEY": "B" * 43 + "=",
    "AUDIT_RECORD_KEY": "C" * 43 + "=",
}
READ_BACK = (
    "import json, lab.settings as s; print(json.dumps({'EMAIL_HOST': s.EMAIL_HOST, "
    "'EMAIL_PORT': s.EMAIL_PORT, "
    "'EMAIL_USE_TLS': s.EMAIL_USE_TLS, 'EMAIL_USE_SSL': s.EMAIL_USE_SSL, "
    "'EMAIL_HOST_USER': s.EMAIL_HOST_USER, 'EMAIL_HOST_PASSWORD': s.EMAIL_HOST_PASSWORD}))"
)
SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
PLAINTEXT_REFUSED = (
    "django.core.exceptions.ImproperlyConfigured: EMAIL_HOST='smtp.lab.internal' is another machine and "
    "neither EMAIL_USE_TLS nor EMAIL_USE_SSL is true"
)


def import_settings(var_dir: Path, **environment: str) -> subprocess.CompletedProcess[str]:
    """`import lab.settings` in a new process outside demo mode (the keys given, an https SITE_URL, the SMTP
    backend) with no EMAIL_ variable but those in `environment`."""
    return settings_imported(
        var_dir,
        READ_BACK,
        {**KEYS, "EMAIL_BACKEND": SMTP_BACKEND, "SITE_URL": "https://lab.example.com", **environment},
        unset=("LAB_DEMO_SECRETS",),
        unset_prefixes=(*KEYS, "EMAIL_", "SECURE_"),
    )


def read_back(completed: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert completed.returncode == 0, completed.stderr[-2000:]
    return dict(json.loads(completed.stdout))


def last_line(completed: subprocess.CompletedProcess[str]) -> str:
    assert completed.returncode != 0
    return completed.stderr.strip().splitlines()[-1]


def test_tls_and_a_login_are_read_the_password_from_a_mounted_file(tmp_path):
    # given STARTTLS on 587 and a login whose password is a mounted secret
    password_file = tmp_path / "smtp_password"
    password_file.write_text("p4ss word\n")

    values = read_back(
        import_settings(
            tmp_path / "var",
            EMAIL_HOST="smtp.lab.internal",
            EMAIL_PORT="587",
            EMAIL_USE_TLS="true",
            EMAIL_HOST_USER="printlab",
            EMAIL_HOST_PASSWORD_FILE=str(password_file),
        )
    )

    assert values == {
        "EMAIL_HOST": "smtp.lab.internal",
        "EMAIL_PORT": 587,
        "EMAIL_USE_TLS": True,
        "EMAIL_USE_SSL": False,
        "EMAIL_HOST_USER": "printlab",
        "EMAIL_HOST_PASSWORD": "p4ss word",
    }


def test_implicit_tls_and_a_password_from_the_environment_are_read(tmp_path):
    values = read_back(
        import_settings(
            tmp_path / "var",
            EMAIL_HOST="smtp.lab.internal",
            EMAIL_PORT="465",
            EMAIL_USE_SSL="yes",
            EMAIL_HOST_USER="printlab",
            EMAIL_HOST_PASSWORD="secret",
        )
    )

    assert (values["EMAIL_USE_TLS"], values["EMAIL_USE_SSL"], values["EMAIL_HOST_PASSWORD"]) == (
        False,
        True,
        "secret",
    )


def test_tls_and_ssl_both_true_stop_the_process(tmp_path):
    completed = import_settings(
        tmp_path / "var", EMAIL_HOST="smtp.lab.internal", EMAIL_USE_TLS="true", EMAIL_USE_SSL="true"
    )

    assert last_line(completed).startswith(
        "django.core.exceptions.ImproperlyConfigured: EMAIL_USE_TLS and EMAIL_USE_SSL are both true"
    )


@pytest.mark.parametrize("name", ["EMAIL_USE_TLS", "EMAIL_USE_SSL", "EMAIL_ALLOW_PLAINTEXT"])
def test_a_mail_switch_that_is_not_a_boolean_stops_the_process(tmp_path, name):
    completed = import_settings(tmp_path / "var", EMAIL_HOST="smtp.lab.internal", **{name: "ture"})

    assert last_line(completed) == (
        f"django.core.exceptions.ImproperlyConfigured: {name}='ture' is not a boolean: use true/false, 1/0, "
        "yes/no or on/off."
    )


def test_a_password_in_the_environment_and_in_a_file_stops_the_process(tmp_path):
    password_file = tmp_path / "smtp_password"
    password_file.write_text("one")

    completed = import_settings(
        tmp_path / "var",
        EMAIL_HOST="smtp.lab.internal",
        EMAIL_USE_TLS="true",
        EMAIL_HOST_PASSWORD="two",
        EMAIL_HOST_PASSWORD_FILE=str(password_file),
    )

    assert last_line(completed) == (
        "django.core.exceptions.ImproperlyConfigured: Set EMAIL_HOST_PASSWORD or EMAIL_HOST_PASSWORD_FILE, "
        "not both."
    )


@pytest.mark.parametrize("switch", [{}, {"EMAIL_USE_TLS": "false", "EMAIL_USE_SSL": "false"}])
def test_outside_demo_mode_smtp_to_another_machine_in_cleartext_stops_the_process(tmp_path, switch):
    """The messages carry receipt links with their bearer token, addresses and tracking numbers: before, the
    documented deployment sent them to smtp.lab.internal:25 unencrypted, and nothing could turn TLS on."""
    completed = import_settings(tmp_path / "var", EMAIL_HOST="smtp.lab.internal", EMAIL_PORT="25", **switch)

    line = last_line(completed)
    assert line.startswith(PLAINTEXT_REFUSED)
    assert "EMAIL_ALLOW_PLAINTEXT=true" in line
    assert not (tmp_path / "var").exists()


@pytest.mark.parametrize(
    "environment",
    [
        {"EMAIL_HOST": "smtp.lab.internal", "EMAIL_USE_TLS": "true"},
        {"EMAIL_HOST": "smtp.lab.internal", "EMAIL_USE_SSL": "true"},
        {"EMAIL_HOST": "smtp.lab.internal", "EMAIL_ALLOW_PLAINTEXT": "true"},
        {},  # localhost, the default: a relay on this machine
        {"EMAIL_HOST": "127.0.0.1"},
        {"EMAIL_HOST": "::1"},
        {"EMAIL_HOST": "smtp.lab.internal", "EMAIL_BACKEND": "anymail.backends.postmark.EmailBackend"},
        {"EMAIL_HOST": "smtp.lab.internal", "LAB_DEMO_SECRETS": "true"},
    ],
    ids=["tls", "ssl", "plaintext-allowed", "localhost", "ipv4-loopback", "ipv6-loopback", "api", "demo"],
)
def test_encrypted_allowed_local_non_smtp_or_demo_mail_is_accepted(tmp_path, environment):
    values = read_back(import_settings(tmp_path / "var", **environment))

    assert values["EMAIL_HOST"] == environment.get("EMAIL_HOST", "localhost")
