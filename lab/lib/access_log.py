"""gunicorn's access log with the client's network for its address (`gunicorn.conf.py`, `logger_class`): the
peer's address is personal data when no proxy stands in front (the embedded run), and logs outlive an
erasure (lab.lib.client_ip.address_for_logs)."""

from __future__ import annotations

from typing import Any

from gunicorn.glogging import Logger

from lab.lib.client_ip import address_for_logs


class AccessLogger(Logger):  # type: ignore[misc]  # gunicorn ships no type hints
    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> dict[str, Any]:
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        atoms["h"] = address_for_logs(str(atoms["h"]))
        return atoms
