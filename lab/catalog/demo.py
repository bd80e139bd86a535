"""The demo catalog: 4x6, 5x7, 8x10 and 11x14 in every paper."""

from __future__ import annotations

from decimal import Decimal

from lab.catalog.currency import lab_currency
from lab.catalog.models import Paper
from lab.catalog.services import product_save

# (short side, long side, base price in cents, minimum DPI)
DEMO_SIZES = [(4, 6, 35, 150), (5, 7, 149, 150), (8, 10, 499, 125), (11, 14, 1299, 100)]
PAPER_SURCHARGE_PERCENT = {Paper.LUSTRE: 0, Paper.GLOSSY: 0, Paper.MATTE: 0, Paper.METALLIC: 40}


def catalog_seed_demo() -> int:
    created = 0
    for short, long, price, min_dpi in DEMO_SIZES:
        for paper in Paper:
            _, was_created = product_save(
                sku=f"PRINT-{short}X{long}-{paper.value.upper()}",
                width_in=Decimal(short),
                height_in=Decimal(long),
                name=f'{short}x{long}" {paper.label} print',
                paper=paper,
                price_minor=price * (100 + PAPER_SURCHARGE_PERCENT[paper]) // 100,
                currency=lab_currency(),
                min_dpi=min_dpi,
            )
            created += int(was_created)
    return created
