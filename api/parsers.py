"""Request body parsers: DRF's own, with every way a JSON body can fail to parse answered as a 400.

DRF's JSONParser turns a ValueError into a ParseError, but Python's json raises RecursionError for a body
nested deeper than the interpreter's recursion limit (about a thousand brackets, a 10 KB body), which reached
Django as a 500 on every JSON endpoint, anonymous ones included.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import IO, Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError


class JSONParser(parsers.JSONParser):
    def parse(
        self, stream: IO[Any], media_type: str | None = None, parser_context: Mapping[str, Any] | None = None
    ) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - the body is nested too deeply.") from None
