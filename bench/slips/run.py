"""Benchmark of packing-slip rendering: ms per one-page slip (bitmap QR vs ReportLab's vector QR widget)
and pages per second for a day's batch of 100 orders in one PDF. Run: .venv/bin/python -m bench.slips.run"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from pypdf import PdfReader
from reportlab.graphics import renderPDF
from reportlab.graphics.barcode.qr import QrCodeWidget
from reportlab.graphics.shapes import Drawing
from reportlab.pdfgen.canvas import Canvas

from lab.packing.slip import (
    SlipData,
    SlipItem,
    paint_qr_bitmap,
    plan_pages,
    render_slips,
    render_slips_with_qr_painter,
)

TARGET_MS_PER_SLIP = 20.0
WARMUP_RUNS = 5


def paint_qr_vector(canvas: Canvas, text: str, x: float, y: float, size: float) -> None:
    """The baseline: ReportLab's own QR widget, one filled rectangle per dark module."""
    widget = QrCodeWidget(text, barLevel="M", barBorder=4)
    left, bottom, right, top = widget.getBounds()
    drawing = Drawing(size, size, transform=[size / (right - left), 0, 0, size / (top - bottom), 0, 0])
    drawing.add(widget)
    renderPDF.draw(drawing, canvas, x, y)


def make_slip(*, number: int, item_count: int) -> SlipData:
    order_ref = f"PL-2025-{number:06d}"
    return SlipData(
        lab_name="Northlight Photo Lab",
        lab_contact="12 Harbour Street, Gdańsk\nsupport@northlight.example · +48 58 000 00 00",
        order_ref=order_ref,
        ship_to=["Zoë Müller", "Ulica Piotrkowska 104/5", "90-006 Łódź", "Poland"],
        shipping_method="Courier (DPD Classic)",
        items=[
            SlipItem(
                product=f"Lustre print {line}",
                size=("4x6 in", "5x7 in", "8x10 in")[line % 3],
                paper="Lustre 260 g",
                copies=1 + line % 3,
                sizing="fill (crop)",
            )
            for line in range(1, item_count + 1)
        ],
        printed_on=datetime.date(2025, 3, 14),
        notes="Pack flat with a card stiffener." if number % 4 == 0 else "",
    )


def batch_item_count(*, number: int) -> int:
    """A day's mix: mostly 1-12 lines, every 20th order a 50-line album run that takes two pages."""
    return 50 if number % 20 == 19 else 1 + (number * 7) % 12


def time_renders(*, render: Callable[[], bytes], runs: int) -> list[float]:
    for _ in range(WARMUP_RUNS):
        render()
    durations_ms: list[float] = []
    for _ in range(runs):
        started = time.perf_counter()
        render()
        durations_ms.append((time.perf_counter() - started) * 1000)
    return durations_ms


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[18]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200, help="renders per single-slip measurement")
    parser.add_argument("--batch", type=int, default=100, help="orders in the batch PDF")
    parser.add_argument("--batch-runs", type=int, default=5, help="renders of the batch PDF")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    arguments = parser.parse_args()

    slip = make_slip(number=123, item_count=5)
    assert len(plan_pages(slip=slip)) == 1
    bitmap = time_renders(
        render=lambda: render_slips_with_qr_painter(slips=[slip], paint_qr=paint_qr_bitmap),
        runs=arguments.runs,
    )
    vector = time_renders(
        render=lambda: render_slips_with_qr_painter(slips=[slip], paint_qr=paint_qr_vector),
        runs=arguments.runs,
    )
    print(f"one-page slip, 5 lines, {arguments.runs} runs after {WARMUP_RUNS} warm-up:")
    for label, durations in (("bitmap QR (render_slip)", bitmap), ("vector QR widget (baseline)", vector)):
        print(f"  {label:28s} median {statistics.median(durations):6.2f} ms   p95 {p95(durations):6.2f} ms")
    ratio = statistics.median(vector) / statistics.median(bitmap)
    print(f"  vector/bitmap median ratio {ratio:.2f}x")
    verdict = "meets" if statistics.median(bitmap) <= TARGET_MS_PER_SLIP else "MISSES"
    print(f"  target <= {TARGET_MS_PER_SLIP:.0f} ms per slip (median): {verdict}")

    slips = [
        make_slip(number=number, item_count=batch_item_count(number=number))
        for number in range(arguments.batch)
    ]
    batch = time_renders(render=lambda: render_slips(slips=slips), runs=arguments.batch_runs)
    pdf = render_slips(slips=slips)
    pages = len(PdfReader(io.BytesIO(pdf)).pages)
    median_s = statistics.median(batch) / 1000
    print(f"batch of {arguments.batch} orders in one PDF, {arguments.batch_runs} runs:")
    print(
        f"  {pages} pages, {len(pdf) / 1024:.0f} KiB, median {median_s * 1000:.0f} ms "
        f"(min {min(batch):.0f}, max {max(batch):.0f}) = {pages / median_s:.1f} pages/s, "
        f"{median_s * 1000 / arguments.batch:.2f} ms per order"
    )
    if arguments.json:
        figures = {
            "slip_median_ms": statistics.median(bitmap),
            "slip_p95_ms": p95(bitmap),
            "vector_median_ms": statistics.median(vector),
            "vector_p95_ms": p95(vector),
            "batch_pages": pages,
            "batch_pages_per_s": pages / median_s,
        }
        arguments.json.write_text(json.dumps({"benchmark": "slips", "figures": figures}))


if __name__ == "__main__":
    main()
