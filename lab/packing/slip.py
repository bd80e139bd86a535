"""Packing-slip PDF rendering with ReportLab: one order's slip, or a day's slips in one PDF.
Pure Python (no Django, no database): callers pass plain SlipData and get PDF bytes back."""

from __future__ import annotations

import datetime
import io
import logging
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import qrcode
from PIL import Image
from qrcode.constants import ERROR_CORRECT_M
from reportlab.graphics.barcode.code128 import Code128
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.lib.utils import simpleSplit
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas

logger = logging.getLogger(__name__)

# Embedded DejaVu (Debian package fonts-dejavu-core) instead of the built-in Helvetica: Helvetica's
# encoding has no Ł, ő, Cyrillic or Greek, and a courier cannot deliver to "■ód■".
FONT_DIRECTORY = "/usr/share/fonts/truetype/dejavu"
FONT_REGULAR = "SlipSans"
FONT_BOLD = "SlipSans-Bold"
_FONT_FILES = {FONT_REGULAR: "DejaVuSans.ttf", FONT_BOLD: "DejaVuSans-Bold.ttf"}
# DejaVu has no Chinese, Japanese or Korean: an address in them printed as empty boxes. Its characters are
# drawn in WenQuanYi Micro Hei (Debian package fonts-wqy-microhei; ideographs, kana, Hangul), run by run.
# Without the package they stay boxes, and a warning says why. Scripts that need shaping or right-to-left
# order (Arabic, Hebrew, Thai, Devanagari) are not handled: ReportLab draws their letters unjoined, in
# typed order.
FONT_FALLBACK = "SlipSansCJK"
FONT_FALLBACK_FILE = "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"

PAGE_WIDTH, PAGE_HEIGHT = A4
MARGIN = 15 * mm
CONTENT_WIDTH = PAGE_WIDTH - 2 * MARGIN
QR_SIZE = 26 * mm
BARCODE_BAR_WIDTH = 1.0  # points per module: about 2.8 px at 200 dpi, ample for scanners
BARCODE_HEIGHT = 12 * mm
ROW_HEIGHT = 16.0
TABLE_HEADER_HEIGHT = 18.0
TOTALS_HEIGHT = 58.0
MAX_ADDRESS_LINES = 8
# The address block's type: 10 pt, smaller only when the address wrapped at 10 pt would not leave the first
# page room for one item line and the totals (the longest address the API accepts, in the widest characters
# the fonts draw, fits at about 8 pt). Below the smallest size, SlipData refuses the address.
ADDRESS_FONT_SIZES = tuple(size / 2 for size in range(20, 7, -1))  # 10, 9.5, ... 4 pt
MAX_NOTE_LINES = 6
MAX_CONTACT_LINES = 3
ELLIPSIS = "…"

# (heading, width in points, right-aligned); the tick-box column has no heading.
_COLUMNS: tuple[tuple[str, float, bool], ...] = (
    ("", 20.0, False),
    ("#", 24.0, True),
    ("Product", 160.0, False),
    ("Size", 62.0, False),
    ("Paper", 92.0, False),
    ("Copies", 44.0, True),
    ("Sizing", CONTENT_WIDTH - 402.0, False),
)
_COLUMN_PADDING = 4.0

QrPainter = Callable[[Canvas, str, float, float, float], None]
"""Draws a QR code for a text at (x, y) lower-left corner with the given side length in points."""


@dataclass(frozen=True)
class SlipItem:
    product: str
    size: str
    paper: str
    copies: int
    sizing: str

    def __post_init__(self) -> None:
        if self.copies < 1:
            raise ValueError(f"an item line needs at least one copy, got {self.copies}")


@dataclass(frozen=True)
class SlipData:
    lab_name: str
    lab_contact: str
    order_ref: str
    ship_to: list[str]
    shipping_method: str
    items: list[SlipItem]
    printed_on: datetime.date
    notes: str = ""

    def __post_init__(self) -> None:
        # Code128 carries ASCII 32..126 only; anything else would scan as something other than the ref.
        if not self.order_ref or not all(32 <= ord(character) <= 126 for character in self.order_ref):
            raise ValueError("order_ref must be non-empty printable ASCII to fit in a Code128 barcode")
        if not self.items:
            raise ValueError("a packing slip needs at least one item")
        if not self.ship_to or len(self.ship_to) > MAX_ADDRESS_LINES:
            raise ValueError(f"ship_to needs 1 to {MAX_ADDRESS_LINES} address lines, got {len(self.ship_to)}")
        if _address_layout(ship_to=tuple(self.ship_to)) is None:
            raise ValueError("ship_to is too long to print whole on a slip's first page")


def render_slip(*, slip: SlipData) -> bytes:
    """One order's packing slip as a PDF: one page, more for long orders."""
    return render_slips_with_qr_painter(slips=[slip], paint_qr=paint_qr_bitmap)


def render_slips(*, slips: Sequence[SlipData]) -> bytes:
    """A day's slips in one PDF, each starting on a new page, with an outline entry per order."""
    return render_slips_with_qr_painter(slips=slips, paint_qr=paint_qr_bitmap)


def render_slips_with_qr_painter(*, slips: Sequence[SlipData], paint_qr: QrPainter) -> bytes:
    """Renders slips with a chosen QR drawing method; the benchmark uses it to compare methods."""
    if not slips:
        raise ValueError("render_slips needs at least one slip")
    _register_fonts()
    buffer = io.BytesIO()
    # types-reportlab types initialFontName as a float; reportlab takes a font name.
    canvas = Canvas(buffer, pagesize=A4, invariant=True, initialFontName=FONT_REGULAR)  # type: ignore[arg-type]
    canvas.setTitle("Packing slips" if len(slips) > 1 else f"Packing slip {slips[0].order_ref}")
    canvas.setAuthor(slips[0].lab_name)
    canvas.setCreator(slips[0].lab_name)
    for position, slip in enumerate(slips):
        outline_key = f"slip-{position}" if len(slips) > 1 else None
        _draw_slip(canvas=canvas, slip=slip, paint_qr=paint_qr, outline_key=outline_key)
    canvas.save()
    return buffer.getvalue()


def paint_qr_bitmap(canvas: Canvas, text: str, x: float, y: float, size: float) -> None:
    """Draws the QR as a 1-bit inline image, one pixel per module, scaled up by the PDF viewer."""
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, box_size=1, border=4)
    code.add_data(text)
    code.make(fit=True)
    matrix = code.get_matrix()
    side = len(matrix)
    pixels = bytes(0 if is_dark else 255 for row in matrix for is_dark in row)
    image = Image.frombytes("L", (side, side), pixels).convert("1")
    canvas.drawInlineImage(image, x, y, width=size, height=size)


def plan_pages(*, slip: SlipData) -> list[range]:
    """Item indexes on each page; the last page also has room for the totals and checklist footer."""
    _register_fonts()  # note wrapping measures text in the embedded font
    remaining = range(len(slip.items))
    first_page_rows = _rows_that_fit(table_top=_table_top(slip=slip, is_first_page=True))
    later_page_rows = _rows_that_fit(table_top=_table_top(slip=slip, is_first_page=False))
    totals_rows = int(TOTALS_HEIGHT // ROW_HEIGHT) + 1
    pages: list[range] = []
    capacity = first_page_rows
    while True:
        if len(remaining) + totals_rows <= capacity:
            pages.append(remaining)
            return pages
        # Keep at least one line for the page holding the totals so it never stands alone.
        taken = min(capacity, len(remaining) - 1) if len(remaining) <= capacity else capacity
        pages.append(remaining[:taken])
        remaining = remaining[taken:]
        capacity = later_page_rows


_fonts_registered = False
_glyphs: dict[str, frozenset[int]] = {}  # font name -> the code points it draws


def _register_fonts() -> None:
    global _fonts_registered
    if _fonts_registered:
        return
    for name, file_name in _FONT_FILES.items():
        font = TTFont(name, f"{FONT_DIRECTORY}/{file_name}")
        pdfmetrics.registerFont(font)
        _glyphs[name] = frozenset(font.face.charToGlyph)
    if Path(FONT_FALLBACK_FILE).exists():
        fallback = TTFont(FONT_FALLBACK, FONT_FALLBACK_FILE, subfontIndex=0)
        pdfmetrics.registerFont(fallback)
        _glyphs[FONT_FALLBACK] = frozenset(fallback.face.charToGlyph)
    else:
        logger.warning("slip font missing, CJK prints as boxes path=%s", FONT_FALLBACK_FILE)
    _fonts_registered = True


def _runs(text: str, font: str) -> list[tuple[str, str]]:
    """`text` as (run, font) pieces: each character in `font` if it has it, else in the fallback if that
    has it, else in `font` (a box)."""
    _register_fonts()
    own, fallback = _glyphs[font], _glyphs.get(FONT_FALLBACK, frozenset())
    runs: list[tuple[str, str]] = []
    for character in text:
        code = ord(character)
        chosen = FONT_FALLBACK if code not in own and code in fallback else font
        if runs and runs[-1][1] == chosen:
            runs[-1] = (runs[-1][0] + character, chosen)
        else:
            runs.append((character, chosen))
    return runs


def _text_width(text: str, font: str, size: float) -> float:
    return float(sum(pdfmetrics.stringWidth(run, run_font, size) for run, run_font in _runs(text, font)))


def _draw_text(canvas: Canvas, x: float, y: float, text: str, font: str, size: float) -> None:
    """drawString for text a customer typed: characters the slip's font lacks come from the fallback."""
    for run, run_font in _runs(text, font):
        canvas.setFont(run_font, size)
        canvas.drawString(x, y, run)
        x += pdfmetrics.stringWidth(run, run_font, size)
    canvas.setFont(font, size)


def _draw_slip(*, canvas: Canvas, slip: SlipData, paint_qr: QrPainter, outline_key: str | None) -> None:
    pages = plan_pages(slip=slip)
    for page_index, item_indexes in enumerate(pages):
        if outline_key is not None and page_index == 0:
            # Keyed by position, not order ref: a batch may hold a reprint of the same order twice.
            canvas.bookmarkPage(outline_key)
            canvas.addOutlineEntry(slip.order_ref, outline_key, level=0)
        _draw_header(
            canvas=canvas, slip=slip, paint_qr=paint_qr, page_number=page_index + 1, pages=len(pages)
        )
        is_first_page = page_index == 0
        if is_first_page:
            _draw_addresses(canvas=canvas, slip=slip)
        table_bottom = _draw_items(
            canvas=canvas,
            slip=slip,
            item_indexes=item_indexes,
            top=_table_top(slip=slip, is_first_page=is_first_page),
        )
        if page_index == len(pages) - 1:
            _draw_totals(canvas=canvas, slip=slip, top=table_bottom)
        canvas.showPage()


def _header_bottom() -> float:
    return PAGE_HEIGHT - MARGIN - QR_SIZE - 40.0


def _address_block_height(*, slip: SlipData) -> float:
    right_lines = 2 + (1 + len(_note_lines(slip=slip)) if slip.notes else 0)
    return max(_slip_address_layout(slip=slip).height, 16.0 + 12.0 * right_lines)


def _table_top(*, slip: SlipData, is_first_page: bool) -> float:
    top = _header_bottom() - 10.0
    if is_first_page:
        top -= _address_block_height(slip=slip) + 8.0
    return top


def _rows_that_fit(*, table_top: float) -> int:
    return int((table_top - TABLE_HEADER_HEIGHT - MARGIN) // ROW_HEIGHT)


def _note_lines(*, slip: SlipData) -> list[str]:
    width = CONTENT_WIDTH / 2 - 10.0
    lines: list[str] = simpleSplit(slip.notes, FONT_REGULAR, 9, width)
    if len(lines) > MAX_NOTE_LINES:
        lines = [
            *lines[: MAX_NOTE_LINES - 1],
            _fit(lines[MAX_NOTE_LINES - 1] + ELLIPSIS, FONT_REGULAR, 9, width),
        ]
    return lines


def _fit(text: str, font: str, size: float, width: float) -> str:
    """Cuts text to a width with an ellipsis, so one long name cannot push over a neighbouring column."""
    if _text_width(text, font, size) <= width:
        return text
    while text and _text_width(text + ELLIPSIS, font, size) > width:
        text = text[:-1]
    return text + ELLIPSIS


@dataclass(frozen=True)
class _AddressLayout:
    size: float
    lines: tuple[str, ...]  # every ship-to line wrapped to the column, in order

    @property
    def leading(self) -> float:
        return 1.2 * self.size

    @property
    def first_baseline_drop(self) -> float:
        """From the block's top to the first address line's baseline, under the "Ship to" heading."""
        return 12.0 + self.size

    @property
    def height(self) -> float:
        # 16 + 12 per line at 10 pt, as before wrapping: the last line's descenders included.
        return self.first_baseline_drop + self.leading * (len(self.lines) - 1) + 0.6 * self.size


def _address_column_width() -> float:
    return CONTENT_WIDTH / 2 - 10.0


def _address_room() -> float:
    """The tallest address block that leaves the first page room for the item table's heading, one item line
    and the totals: an order of one line is one page whatever its address."""
    totals_rows = int(TOTALS_HEIGHT // ROW_HEIGHT) + 1
    table_top_lowest = MARGIN + TABLE_HEADER_HEIGHT + ROW_HEIGHT * (totals_rows + 1)
    return _header_bottom() - 10.0 - 8.0 - table_top_lowest


def _address_layout(*, ship_to: tuple[str, ...]) -> _AddressLayout | None:
    """The ship-to lines wrapped, never cut, at the largest of ADDRESS_FONT_SIZES whose block fits
    _address_room; None when even the smallest does not."""
    _register_fonts()  # wrapping measures text in the embedded fonts
    width = _address_column_width()
    unit_widths = [_character_widths(line, FONT_REGULAR, 1.0) for line in ship_to]
    for size in ADDRESS_FONT_SIZES:
        lines: list[str] = []
        for line, widths in zip(ship_to, unit_widths, strict=True):
            lines.extend(_wrap(line, [size * unit for unit in widths], width))
        layout = _AddressLayout(size=size, lines=tuple(lines))
        if layout.height <= _address_room():
            return layout
    return None


def _slip_address_layout(*, slip: SlipData) -> _AddressLayout:
    layout = _address_layout(ship_to=tuple(slip.ship_to))
    if layout is None:  # SlipData refuses such an address: only a SlipData changed after it was made
        raise ValueError("ship_to is too long to print whole on a slip's first page")
    return layout


def _character_widths(text: str, font: str, size: float) -> list[float]:
    """Each character's advance as _draw_text draws it, run by run (in the fallback where `font` lacks it):
    they add up to _text_width."""
    return [
        float(pdfmetrics.stringWidth(character, run_font, size))
        for run, run_font in _runs(text, font)
        for character in run
    ]


def _breaks_anywhere(character: str) -> bool:
    """Wide characters (Chinese, Japanese, Korean): a line may break before or after any of them."""
    return unicodedata.east_asian_width(character) in ("W", "F")


def _wrap(text: str, widths: Sequence[float], width: float) -> list[str]:
    """`text` (its characters `widths` wide) over as many lines as it takes to fit `width`. Breaks at spaces
    (which the break swallows) and beside wide characters; a word wider than the column alone is broken
    between characters (not before a combining mark). Every character but a space broken at is kept."""
    lines: list[str] = []
    start, end = 0, len(text)
    while start < end and text[start].isspace():  # a continuation line starts at a character
        start += 1
    while sum(widths[start:end]) > width:
        fits, used = start, 0.0  # text[start:fits] is what fits the width
        while fits < end and used + widths[fits] <= width:
            used += widths[fits]
            fits += 1
        cut = start
        for index in range(fits, start, -1):  # the last break opportunity within what fits
            before, after = text[index - 1], text[index]
            if after.isspace() or (
                not before.isspace() and (_breaks_anywhere(before) or _breaks_anywhere(after))
            ):
                cut = index  # text[start] is no space: the line is not empty
                break
        if cut == start:  # one word wider than the column: broken by characters
            cut = max(fits, start + 1)
            while cut > start + 1 and unicodedata.combining(text[cut]):
                cut -= 1
        lines.append(text[start:cut].rstrip())
        start = cut
        while start < end and text[start].isspace():
            start += 1
    if start < end or not lines:
        lines.append(text[start:end])
    return lines


def _draw_header(
    *, canvas: Canvas, slip: SlipData, paint_qr: QrPainter, page_number: int, pages: int
) -> None:
    top = PAGE_HEIGHT - MARGIN
    right = PAGE_WIDTH - MARGIN
    left_width = CONTENT_WIDTH - QR_SIZE - 120.0

    canvas.setFont(FONT_BOLD, 15)
    canvas.drawString(MARGIN, top - 15, _fit(slip.lab_name, FONT_BOLD, 15, left_width))
    canvas.setFont(FONT_REGULAR, 8.5)
    for line_index, line in enumerate(slip.lab_contact.splitlines()[:MAX_CONTACT_LINES]):
        canvas.drawString(MARGIN, top - 28 - 10.5 * line_index, _fit(line, FONT_REGULAR, 8.5, left_width))

    canvas.setFont(FONT_BOLD, 13)
    canvas.drawRightString(right, top - 13, "PACKING SLIP")
    canvas.setFont(FONT_REGULAR, 9)
    canvas.drawRightString(right, top - 25, f"Printed on {slip.printed_on.isoformat()}")
    canvas.drawRightString(right - QR_SIZE - 8, top - 40, f"Page {page_number} of {pages}")

    # The order's ref, as the barcode: what the packing station and the counter scan (a phone's camera reads
    # a QR, not a Code128). Not a status link: GET orders/{ref} answers only with the order's token or its
    # owner's credentials, which no one scanning a box has, and a token on paper would travel with the parcel.
    paint_qr(canvas, slip.order_ref, right - QR_SIZE, top - 32 - QR_SIZE, QR_SIZE)
    canvas.setFont(FONT_REGULAR, 6.5)
    canvas.drawCentredString(right - QR_SIZE / 2, top - 38 - QR_SIZE, "Order code")

    barcode = Code128(slip.order_ref, barWidth=BARCODE_BAR_WIDTH, barHeight=BARCODE_HEIGHT)
    barcode_bottom = top - 52 - BARCODE_HEIGHT
    # The page margin already is white space, so the bars start at the margin and the quiet zone sits in it.
    barcode.drawOn(canvas, MARGIN - barcode.lquiet, barcode_bottom)
    canvas.setFont(FONT_BOLD, 13)
    canvas.drawString(MARGIN, barcode_bottom - 16, f"Order {slip.order_ref}")

    canvas.setLineWidth(0.8)
    canvas.line(MARGIN, _header_bottom(), right, _header_bottom())


def _draw_addresses(*, canvas: Canvas, slip: SlipData) -> None:
    top = _header_bottom() - 10.0
    half = CONTENT_WIDTH / 2
    column_width = _address_column_width()
    canvas.setFont(FONT_BOLD, 9)
    canvas.drawString(MARGIN, top - 9, "Ship to")
    # Wrapped, never cut: a box labelled "…Junior Blvd Apt …" lost its flat number.
    layout = _slip_address_layout(slip=slip)
    for line_index, line in enumerate(layout.lines):
        baseline = top - layout.first_baseline_drop - layout.leading * line_index
        _draw_text(canvas, MARGIN, baseline, line, FONT_REGULAR, layout.size)

    right_column = MARGIN + half
    canvas.setFont(FONT_BOLD, 9)
    canvas.drawString(right_column, top - 9, "Shipping method")
    canvas.setFont(FONT_REGULAR, 10)
    canvas.drawString(right_column, top - 22, _fit(slip.shipping_method, FONT_REGULAR, 10, column_width))
    if slip.notes:
        canvas.setFont(FONT_BOLD, 9)
        canvas.drawString(right_column, top - 40, "Notes")
        canvas.setFont(FONT_REGULAR, 9)
        for line_index, line in enumerate(_note_lines(slip=slip)):
            canvas.drawString(right_column, top - 52 - 12 * line_index, line)


def _draw_items(*, canvas: Canvas, slip: SlipData, item_indexes: range, top: float) -> float:
    right = PAGE_WIDTH - MARGIN
    canvas.setFont(FONT_BOLD, 9)
    x = MARGIN
    for heading, width, is_right_aligned in _COLUMNS:
        if is_right_aligned:
            canvas.drawRightString(x + width - _COLUMN_PADDING, top - 12, heading)
        else:
            canvas.drawString(x + _COLUMN_PADDING, top - 12, heading)
        x += width
    canvas.setLineWidth(0.8)
    y = top - TABLE_HEADER_HEIGHT
    canvas.line(MARGIN, y, right, y)

    canvas.setLineWidth(0.4)
    box = 9.0
    for index in item_indexes:
        item = slip.items[index]
        baseline = y - ROW_HEIGHT + 4.5
        canvas.rect(MARGIN + _COLUMN_PADDING, baseline - 1, box, box)
        cells = (str(index + 1), item.product, item.size, item.paper, str(item.copies), item.sizing)
        x = MARGIN + _COLUMNS[0][1]
        canvas.setFont(FONT_REGULAR, 9)
        for text, (_, width, is_right_aligned) in zip(cells, _COLUMNS[1:], strict=True):
            fitted = _fit(text, FONT_REGULAR, 9, width - 2 * _COLUMN_PADDING)
            if is_right_aligned:
                canvas.drawRightString(x + width - _COLUMN_PADDING, baseline, fitted)
            else:
                canvas.drawString(x + _COLUMN_PADDING, baseline, fitted)
            x += width
        y -= ROW_HEIGHT
        canvas.line(MARGIN, y, right, y)
    return y


def _draw_totals(*, canvas: Canvas, slip: SlipData, top: float) -> None:
    right = PAGE_WIDTH - MARGIN
    total_copies = sum(item.copies for item in slip.items)
    canvas.setLineWidth(0.8)
    canvas.line(MARGIN, top - 1.5, right, top - 1.5)
    canvas.setFont(FONT_BOLD, 10)
    copies_right = MARGIN + sum(width for _, width, _ in _COLUMNS[:6]) - _COLUMN_PADDING
    canvas.drawRightString(copies_right - _COLUMNS[5][1], top - 16, "Total copies")
    canvas.drawRightString(copies_right, top - 16, str(total_copies))

    canvas.setLineWidth(0.6)
    box = 10.0
    checklist_top = top - 36
    canvas.rect(MARGIN + _COLUMN_PADDING, checklist_top - 1, box, box)
    canvas.setFont(FONT_REGULAR, 9)
    lines = len(slip.items)
    canvas.drawString(
        MARGIN + 20,
        checklist_top,
        f"All {lines} item line{'s' if lines != 1 else ''} checked, {total_copies} "
        f"cop{'ies' if total_copies != 1 else 'y'} packed",
    )
    canvas.drawString(MARGIN + 300, checklist_top, "Packed by ____________________")
