"""Seeds the scale bench's fresh database: roles, the demo catalog, and N hot-folder minilabs that each hold
4x6 lustre, one folder each under HOTFOLDER_ROOT. Run by bench/scale/run.py in the bench's environment:
`python -m bench.scale.seed --printers 100`."""

from __future__ import annotations

import argparse
from pathlib import Path

import django


def printer_name(index: int) -> str:
    return f"minilab-{index:03d}"


def seed(*, printers: int) -> None:
    from django.conf import settings

    from lab.accounts.services import roles_ensure
    from lab.catalog.demo import catalog_seed_demo
    from lab.production.models import Printer
    from printers.registry import KIND_HOTFOLDER

    roles_ensure()
    catalog_seed_demo()
    for index in range(printers):
        name = printer_name(index)
        (Path(settings.HOTFOLDER_ROOT) / name).mkdir(parents=True, exist_ok=True)
        # No printer service creates printers (the lab admin and printers_sync do); as bench/supervisor, rows.
        Printer.objects.create(
            name=name,
            backend=KIND_HOTFOLDER,
            target=name,  # under HOTFOLDER_ROOT
            location="scale bench",
            media_sizes=["4x6"],
            papers=["lustre"],
            dpi=300,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--printers", type=int, required=True)
    arguments = parser.parse_args()
    django.setup()
    seed(printers=arguments.printers)


if __name__ == "__main__":
    main()
