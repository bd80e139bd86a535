"""Content negotiation that answers in the view's own media type, not 406, when `Accept` names none of it.

DRF checks `Accept` before the view runs and refused with an undeclared 406 when no renderer matched, with the
view not run: a client generated from the OpenAPI schema sends `Accept: application/problem+json` for an
operation whose only declared bodies are its problems (the 204 deletes), so its deletion was never carried
out; and `Accept: image/jpeg` for a proof, which the JSON renderer does not match though the view answers a
JPEG. RFC 9110 (12.5.1) lets a server disregard `Accept` and answer in its own type; a problem is
problem+json whatever was negotiated (api/errors.py ProblemResponse). A `?format=` naming no renderer is
still a 404, as in DRF.
"""

from __future__ import annotations

from collections.abc import Iterable

from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request


class FirstRendererFallback(DefaultContentNegotiation):
    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderers = list(renderers)
        try:
            selected: tuple[BaseRenderer, str] = super().select_renderer(request, renderers, format_suffix)
        except NotAcceptable:
            # The renderers left after a `?format=` (DRF raises Http404 when it leaves none).
            fmt = format_suffix or request.query_params.get(self.settings.URL_FORMAT_OVERRIDE)
            candidates = self.filter_renderers(renderers, fmt) if fmt else renderers
            first = candidates[0]
            return first, str(first.media_type)
        return selected
