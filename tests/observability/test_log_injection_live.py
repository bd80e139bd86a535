"""What a client sends reaches the logs of a live gunicorn (LOG_FORMAT=plain, no proxy: the client is the
peer) only as ids and networks: gunicorn's refusal of a malformed request names neither the peer's address nor
what it sent, and a decoded `%0A` in a path forges no line, neither the lab's nor the access log's
(gunicorn.conf.py, lab/lib/access_log.py, lab.lib.log_format.escape_for_log)."""

from __future__ import annotations

import re
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.postgres_server import PrivatePostgres
from tests.support.processes import wait_for
from tests.support.redis_server import PrivateRedis
from tests.support.web_server import LabWebServer, app_environment

pytestmark = pytest.mark.e2e(stack="web")


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory, migrated_schema: Path) -> Iterator[LabWebServer]:
    work = tmp_path_factory.mktemp("log-injection")
    with PrivateRedis() as broker, PrivatePostgres() as database:
        env = app_environment(
            database_url=database.create_database("lab", schema=migrated_schema),
            broker_url=broker.url(db=1),
            var_dir=work / "var",
            extra={"LOG_FORMAT": "plain", "TRUSTED_PROXIES": "", "LAB_STORAGE_DIR": str(work / "storage")},
        )
        server = LabWebServer(work_dir=work, env=env).start()
        try:
            yield server
        finally:
            server.stop()


def send_raw(web: LabWebServer, request: bytes) -> bytes:
    """`request` as it is over one connection; gunicorn's answer (it closes the connection after refusing)."""
    with socket.create_connection(("127.0.0.1", web.port), timeout=10) as connection:
        connection.sendall(request)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return answer


def logged_since(web: LabWebServer, offset: int) -> list[str]:
    return web.log.read_bytes()[offset:].decode(errors="replace").splitlines()


def test_a_request_gunicorn_refuses_is_logged_with_the_peer_s_network_and_the_error_s_kind_only(
    web: LabWebServer,
):
    logged_before = web.log.stat().st_size
    refused = {
        # longer than limit_request_line, with what someone typed in its query string: 414
        b"GET /lab/admin/accounts/user/?q=canary.long%40example.org&pad="
        + b"a" * 9000
        + b" HTTP/1.1\r\nHost: lab\r\n\r\n": b"HTTP/1.1 414 ",
        # a control byte in the request line, with a token in its query string: 400
        b"GET /api/v1/receipts/\x01canarytoken1234?token=canarytoken1234 HTTP/1.1\r\nHost: lab\r\n\r\n": (
            b"HTTP/1.1 400 "
        ),
        # a header line without its colon, which holds a customer's e-mail address: 400
        b"GET /healthz HTTP/1.1\r\nHost: lab\r\nX-Contact canary@example.org\r\n\r\n": b"HTTP/1.1 400 ",
    }

    answers = [send_raw(web, request) for request in refused]

    assert [answer[: len(status)] for answer, status in zip(answers, refused.values(), strict=True)] == list(
        refused.values()
    )
    # gunicorn logs the refusal before it answers
    lines = logged_since(web, logged_before)
    assert [line for line in lines if "127.0.0.1" in line or "canary" in line.lower()] == []
    refusals = [line.partition("] [WARNING] ")[2] for line in lines if "Invalid request" in line]
    assert refusals == [
        "Invalid request from 127.0.0.0/24: LimitRequestLine",
        "Invalid request from 127.0.0.0/24: InvalidRequestLine",
        "Invalid request from 127.0.0.0/24: InvalidHeader",
    ], lines


def test_a_newline_in_a_path_forges_no_log_line_and_a_client_s_request_id_is_not_logged(web: LabWebServer):
    logged_before = web.log.stat().st_size
    forged = '{"level": "ERROR", "logger": "lab.audit", "message": "forged-canary"}'
    path = "/lab/photos/x/%0Aforged-canary%0D%0A" + urllib.parse.quote(forged, safe="")
    # a link on another site: the gate refuses it before anyone signs in, and logs its path
    request = urllib.request.Request(
        f"{web.url}{path}",
        headers={"Sec-Fetch-Site": "cross-site", "X-Request-ID": "client-chosen-id-canary"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, request_id = response.status, response.headers["X-Request-ID"]
    except urllib.error.HTTPError as error:
        status, request_id = error.code, error.headers["X-Request-ID"]

    assert status == 403
    # (gunicorn writes its access line after the answer is sent)
    wait_for(
        lambda: any(line.startswith("127.0.0.0/24 ") for line in logged_since(web, logged_before)),
        timeout=10,
        what="the access line",
    )
    lines = logged_since(web, logged_before)
    # then the lab's line and the access line each hold the path on their own line, its controls escaped
    assert [line for line in lines if line.lstrip().startswith(("{", "forged"))] == [], lines
    gate = [line for line in lines if "gate request started by another site refused" in line]
    access = [line for line in lines if line.startswith("127.0.0.0/24 ")]
    # (and django.request's "Forbidden: <path>", escaped by Django itself)
    starts = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (INFO|WARNING) |127\.0\.0\.0/24 ")
    written = [line for line in lines if "forged-canary" in line]
    assert len(written) == 3 and all(starts.match(line) for line in written), lines
    escaped = r"/lab/photos/x/\x0aforged-canary\x0d\x0a"
    assert len(gate) == 1 and gate[0].endswith(f"path={escaped}{forged}"), lines
    quoted = forged.replace('"', '\\"')  # gunicorn's own quoting of the access line's quotes
    assert len(access) == 1 and f' {escaped}{quoted} HTTP/1.1" 403 ' in access[0], access
    # the request id the lab made up and answered with, which its own line carries: not the client's
    assert "client-chosen-id" not in "\n".join(lines)
    assert access[0].endswith(f"ms {request_id}") and f"[{request_id} 127.0.0.0/24]" in gate[0], lines
