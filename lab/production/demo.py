"""The demo printer of the embedded run: a hot-folder minilab that holds every demo size and paper."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from lab.catalog.demo import DEMO_SIZES
from lab.catalog.models import Paper
from lab.production.models import Printer
from printers.registry import KIND_HOTFOLDER


def printer_seed_demo() -> list[str]:
    (Path(settings.HOTFOLDER_ROOT) / "demo-minilab").mkdir(parents=True, exist_ok=True)
    Printer.objects.get_or_create(
        name="demo-minilab",
        defaults={
            "backend": KIND_HOTFOLDER,
            "target": "demo-minilab",  # under HOTFOLDER_ROOT
            "location": "demo floor",
            "media_sizes": [f"{short}x{long}" for short, long, _, _ in DEMO_SIZES],
            "papers": [str(p) for p in Paper],
        },
    )
    return ["demo-minilab"]
