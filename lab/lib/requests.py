"""The WSGI request class of the lab's entry point (lab/wsgi.py).

A Content-Type header Django cannot parse (an RFC 2231 parameter naming an unknown encoding, such as
`multipart/form-data; boundary*=nosuch''x`) raised ValueError in Django's WSGIRequest.__init__, before any
middleware or error handler ran: gunicorn answered its own HTML 500 and logged a traceback. Here the header is
replaced by MALFORMED_CONTENT_TYPE, so the request reaches the middleware, which answers the API's clients a
400 problem (api.middleware) and every other page as a body it does not understand.
"""

from __future__ import annotations

from typing import Any

from django.core.handlers.wsgi import WSGIRequest

MALFORMED_CONTENT_TYPE = "application/x-printlab-malformed-content-type"


class LabRequest(WSGIRequest):
    def _set_content_type_params(self, meta: dict[str, Any]) -> None:
        try:
            super()._set_content_type_params(meta)  # type: ignore[misc]  # private, not in django-stubs
        except ValueError:
            meta["CONTENT_TYPE"] = MALFORMED_CONTENT_TYPE
            super()._set_content_type_params(meta)  # type: ignore[misc]  # private, not in django-stubs
