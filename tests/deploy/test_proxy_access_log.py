"""The HTTPS proxy deploy/README.md prescribes logs no query string: e-mailed receipt links carry their token
there, and nginx's default access log format (`combined`) logs `$request`, query included."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# nginx variables that hold the query string, or a whole URL with it
QUERY_VARIABLES = re.compile(r"\$(request|request_uri|args|query_string|is_args|http_referer)\b|\$arg_")


def _app_host_section() -> str:
    """The app host's item of deploy/README.md's roles, where the proxy is prescribed."""
    text = (ROOT / "deploy" / "README.md").read_text()
    start = text.index("- **app host**")
    return text[start : text.index("\n- **", start)]


def test_the_proxy_logs_requests_with_a_format_that_has_the_path_and_no_query_string():
    section = _app_host_section()

    formats = dict(re.findall(r"`log_format (\w+) '([^']*)';`", section))
    used = re.findall(r"`access_log \S+ (\w+);`", section)

    assert list(formats) == ["printlab"]
    assert used == ["printlab"]
    assert "$uri" in formats["printlab"]
    assert QUERY_VARIABLES.findall(formats["printlab"]) == []
