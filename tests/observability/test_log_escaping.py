"""A client's words in a log record's arguments are written on the record's one line in both LOG_FORMATs, with
their controls escaped and other text as it is; gunicorn's error log names a request an error ended without
its query string (lab.lib.log_format.escape_for_log, lab.lib.access_log)."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any, cast

from django.conf import settings
from django.http import HttpResponseNotFound
from django.test import RequestFactory
from django.utils.log import log_response
from gunicorn.config import Config

from lab.lib.access_log import AccessLogger, _readable_path
from lab.lib.log_format import JsonFormatter
from lab.lib.middleware import RequestContextFilter

FORGED = "\n2026-01-01 00:00:00,000 ERROR lab.audit [- -] forged-canary\r\u2028\x85"


def lab_handler(formatter: logging.Formatter) -> tuple[logging.Handler, io.StringIO]:
    """The lab's console handler as settings.LOGGING builds it, writing to a string."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestContextFilter())
    handler.setFormatter(formatter)
    return handler, stream


def log_through(handler: logging.Handler, message: str, *args: object) -> None:
    logger = logging.getLogger("lab.gate.views")
    logger.addHandler(handler)
    try:
        logger.warning(message, *args)
    finally:
        logger.removeHandler(handler)


def test_a_newline_in_an_argument_forges_no_plain_line_and_a_file_s_name_stays_readable():
    plain: str = cast("dict[str, Any]", settings.LOGGING)["formatters"]["plain"]["format"]
    handler, stream = lab_handler(logging.Formatter(plain))

    log_through(handler, "refused path=%s name=%s", f"/lab/photos/x/{FORGED}", "Łódź 写真\\1.jpg")

    written = stream.getvalue()
    assert written.count("\n") == 1 and len(written.splitlines()) == 1, written
    assert written.endswith(
        r"refused path=/lab/photos/x/\x0a2026-01-01 00:00:00,000 ERROR lab.audit [- -] forged-canary"
        r"\x0d\u2028\u0085 name=Łódź 写真\\1.jpg" + "\n"
    )


def test_a_newline_in_an_argument_stays_in_one_json_object():
    handler, stream = lab_handler(JsonFormatter())

    log_through(handler, "refused path=%(path)s", {"path": f"/lab/photos/x/{FORGED}"})

    lines = stream.getvalue().splitlines()
    assert len(lines) == 1, lines
    assert json.loads(lines[0])["message"] == (
        r"refused path=/lab/photos/x/\x0a2026-01-01 00:00:00,000 ERROR lab.audit [- -] forged-canary"
        r"\x0d\u2028\u0085"
    )


def test_gunicorn_s_error_handling_request_line_names_the_path_without_its_query(tmp_path: Path):
    log = tmp_path / "error.log"
    config = Config()
    config.set("errorlog", str(log))
    logger = AccessLogger(config)
    try:
        try:
            raise RuntimeError("the application failed")
        except RuntimeError:
            # as gunicorn.workers.base.Worker.handle_error writes it
            logger.exception("Error handling request %s %s", "GET", "/lab/admin/?q=canary%40example.org")
    finally:
        for handler in list(logger.error_log.handlers):
            if getattr(handler, "_gunicorn", False):
                logger.error_log.removeHandler(handler)
                handler.close()

    written = log.read_text()
    assert "Error handling request GET /lab/admin/\n" in written and "canary" not in written, written


def test_django_s_own_response_line_is_escaped_once(rf: RequestFactory):
    # Django's log_response escapes its arguments itself (unicode_escape); the lab's filter escaped them again
    plain: str = cast("dict[str, Any]", settings.LOGGING)["formatters"]["plain"]["format"]
    handler, stream = lab_handler(logging.Formatter(plain))
    request = rf.get("/lab/photos/x")
    logger = logging.getLogger("django.request")
    logger.addHandler(handler)
    try:
        log_response(
            "Not Found: %s",
            "/lab/photos/ü\nx",
            response=HttpResponseNotFound(),
            request=request,
            logger=logger,
        )
    finally:
        logger.removeHandler(handler)

    written = stream.getvalue()
    assert len(written.splitlines()) == 1, written
    assert written.endswith(r"Not Found: /lab/photos/\xfc\nx" + "\n"), written


def test_a_byte_that_is_not_utf_8_and_a_typed_backslash_write_different_access_log_paths():
    # PATH_INFO as gunicorn hands it over: the path's bytes as Latin-1 (PEP 3333)
    invalid = b"/a/\xff".decode("latin-1")  # /a/%FF
    typed = b"/a/\\xff".decode("latin-1")  # /a/%5Cxff
    utf_8 = "/a/ü\n".encode().decode("latin-1")

    assert _readable_path(invalid) == r"/a/\xff"
    assert _readable_path(typed) == r"/a/\\xff"
    assert _readable_path(utf_8) == r"/a/ü\x0a"
    # and a C1 control (NEL, %C2%85) reads apart from the byte 0x85 that is not UTF-8 (%85)
    assert _readable_path(b"/a/\xc2\x85".decode("latin-1")) == r"/a/\u0085"
    assert _readable_path(b"/a/\x85".decode("latin-1")) == r"/a/\x85"
