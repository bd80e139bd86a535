"""System checks of the orders app: what intake needs from the machine it runs on."""

from __future__ import annotations

import shutil
from typing import Any

from django.core.checks import CheckMessage, Error

from lab.orders.image_sequential import JPEGTRAN


def jpegtran_installed(**kwargs: Any) -> list[CheckMessage]:
    """Intake stores progressive JPEGs in their sequential form with `jpegtran`
    (lab/orders/image_sequential.py)."""
    if shutil.which(JPEGTRAN):
        return []
    return [
        Error(
            f"`{JPEGTRAN}` is not on PATH: progressive JPEGs would be stored as sent, and a raster worker "
            "decoding one holds all its coefficients (over its 200 MiB budget above ~20 MP).",
            hint="Install Debian's libjpeg-turbo-progs (scripts/run and scripts/test do).",
            id="orders.E001",
        )
    ]
