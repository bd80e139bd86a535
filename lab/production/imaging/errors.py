"""The one error type the rasterizer raises, with stable machine-readable codes.
Every code describes the photo or the spec, so none of them can be cured by retrying the same job."""

from __future__ import annotations

from typing import Final

DECODE_FAILED: Final = "decode_failed"
UNSUPPORTED_FORMAT: Final = "unsupported_format"
UNSUPPORTED_PIXEL_FORMAT: Final = "unsupported_pixel_format"
TOO_LARGE: Final = "too_large"
INVALID_SPEC: Final = "invalid_spec"
INVALID_OUTPUT_PROFILE: Final = "invalid_output_profile"
ENGINE_UNSUPPORTED: Final = "engine_unsupported"


class RasterError(Exception):
    """A photo that cannot become a print with this spec.

    `code` is one of the constants above; `is_permanent` tells the caller (a Celery task) not to retry:
    the same bytes and spec will fail the same way.
    """

    is_permanent: bool = True

    def __init__(self, *, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"RasterError(code={self.code!r}, message={self.message!r})"
