"""Tests for the packing-slip PDF renderer: pages, text, and barcodes decoded from rendered pixels.
Pages are rasterised with pypdfium2 and the Code128 and QR codes read back with zxing-cpp. Both codes carry
the order's ref, the code the packing station scans: the QR was a link to GET /api/v1/orders/{ref}, which
without the order's token (no phone scanning a box has it) answers 404 order_not_found."""

from __future__ import annotations

import dataclasses
import datetime
import io
from typing import Any

import pypdfium2
import pytest
import zxingcpp
from pypdf import PdfReader
from pypdf.generic import Destination

from lab.packing.services import slip_data_for
from lab.packing.slip import SlipData, SlipItem, plan_pages, render_slip, render_slips
from lab.packing.station import order_code_normalize, station_order
from tests.builders import order_for, order_move, person

SHIP_TO = ["Zoë Müller", "Ulica Piotrkowska 104/5", "90-006 Łódź", "Poland"]
SCAN_DPI = 200


def make_item(*, number: int) -> SlipItem:
    return SlipItem(
        product=f"Lustre print {number}",
        size="4x6 in",
        paper="Lustre 260 g",
        copies=1 + number % 3,
        sizing="fill (crop)",
    )


def make_slip(*, order_ref: str = "PL-2025-000123", item_count: int = 3, notes: str = "") -> SlipData:
    return SlipData(
        lab_name="Northlight Photo Lab",
        lab_contact="12 Harbour Street, Gdańsk\nsupport@northlight.example",
        order_ref=order_ref,
        ship_to=SHIP_TO,
        shipping_method="Courier (DPD Classic)",
        items=[make_item(number=number) for number in range(1, item_count + 1)],
        printed_on=datetime.date(2025, 3, 14),
        notes=notes,
    )


def page_texts(pdf: bytes) -> list[str]:
    return [page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages]


def decoded_barcodes(pdf: bytes, *, page_index: int) -> dict[str, str]:
    document = pypdfium2.PdfDocument(pdf)
    try:
        image = document[page_index].render(scale=SCAN_DPI / 72).to_pil()
    finally:
        document.close()
    return {result.format.name: result.text for result in zxingcpp.read_barcodes(image)}


def test_short_order_is_one_page_with_ref_address_products_and_date() -> None:
    # Given an order with three item lines
    slip = make_slip(item_count=3)

    # When its slip is rendered
    pdf = render_slip(slip=slip)

    # Then it is one page holding the order ref, each address line, each product and the date
    texts = page_texts(pdf)
    assert len(texts) == 1
    text = texts[0]
    assert "Order PL-2025-000123" in text
    for line in SHIP_TO:
        assert line in text
    for item in slip.items:
        assert item.product in text
    assert "Printed on 2025-03-14" in text
    assert "Page 1 of 1" in text
    assert "Courier (DPD Classic)" in text


def test_short_order_barcode_and_qr_both_decode_to_the_order_ref() -> None:
    # Given a rendered one-page slip
    pdf = render_slip(slip=make_slip())

    # When the page is rasterised at 200 dpi and scanned
    barcodes = decoded_barcodes(pdf, page_index=0)

    # Then the Code128 and the QR both read as the order ref, and nothing else is found
    assert barcodes == {"Code128": "PL-2025-000123", "QRCode": "PL-2025-000123"}


def test_the_slip_s_qr_is_an_order_code_the_packing_station_accepts_and_no_status_link() -> None:
    # Given the slip of an order whose ref has the shape of the lab's refs
    ref = "PL-7K3M9QXR2TWA"
    pdf = render_slip(slip=make_slip(order_ref=ref))

    # When its QR is scanned
    scanned = decoded_barcodes(pdf, page_index=0)["QRCode"]

    # Then it is the ref, as the station reads a scanned order code; the slip names no status link
    assert order_code_normalize(scanned) == ref == scanned
    [text] = page_texts(pdf)
    assert ("Order status" in text, "http" in text) == (False, False)


@pytest.mark.django_db
def test_an_order_s_slip_qr_opens_that_order_at_the_packing_station_and_links_to_no_api_route() -> None:
    # Given an order at the packing station and the slip the lab makes for it
    order = order_move(order_for(None), "paid", "in_production", "ready_to_pack")
    slip = slip_data_for(order)
    pdf = render_slip(slip=slip)

    # When its codes are scanned
    barcodes = decoded_barcodes(pdf, page_index=0)

    # Then the QR, like the barcode, opens this order at the station (before: a link to GET
    # /api/v1/orders/{ref}, refused by the station and answered 404 to whoever scanned it without a token)
    packer = person("packer")
    assert [station_order(code=code, actor=packer) for code in barcodes.values()] == [order, order]
    assert "/api/v1/orders/" not in repr(slip)
    assert "/api/v1/orders/" not in "\n".join(page_texts(pdf))


def test_qr_is_embedded_as_one_bit_image_with_one_pixel_per_module() -> None:
    # Given a rendered slip
    pdf = render_slip(slip=make_slip())

    # When the page's images are listed
    images = list(PdfReader(io.BytesIO(pdf)).pages[0].images)

    # Then the only image is the QR as a 1-bit bitmap, one pixel per module:
    # version 1 for this ref at level M is 21 modules, plus a 4-module quiet border on each side
    assert [(image.image.mode, image.image.size) for image in images if image.image is not None] == [
        ("1", (29, 29))
    ]


def test_sixty_line_order_spans_pages_with_page_numbers_and_barcode_on_each() -> None:
    # Given an order with sixty item lines
    slip = make_slip(item_count=60)

    # When its slip is rendered
    pdf = render_slip(slip=slip)

    # Then it spans two numbered pages, every product appears once, and the totals close the last page
    texts = page_texts(pdf)
    assert len(texts) == 2
    assert "Page 1 of 2" in texts[0]
    assert "Page 2 of 2" in texts[1]
    everything = "\n".join(texts)
    for item in slip.items:
        assert everything.count(f"{item.product}\n") == 1
    assert "Total copies" not in texts[0]
    assert "Total copies\n120\n" in texts[1]
    assert "All 60 item lines checked, 120 copies packed" in texts[1]
    # And the barcode and QR are repeated and scannable on every page
    for page_index in range(2):
        assert decoded_barcodes(pdf, page_index=page_index) == {
            "Code128": "PL-2025-000123",
            "QRCode": "PL-2025-000123",
        }


def test_page_plan_covers_every_line_once_and_never_leaves_the_totals_alone() -> None:
    # Given orders of every length from 1 to 120 lines
    for item_count in range(1, 121):
        slip = make_slip(item_count=item_count)

        # When their pages are planned
        pages = plan_pages(slip=slip)

        # Then the pages list each line once, in order, and no page (the last included) is empty
        assert [index for page in pages for index in page] == list(range(item_count))
        assert all(len(page) > 0 for page in pages)


def test_page_plan_breaks_where_the_totals_no_longer_fit() -> None:
    # Given / when orders around the first page's capacity are planned
    page_sizes = {
        count: [len(page) for page in plan_pages(slip=make_slip(item_count=count))] for count in (29, 30, 31)
    }

    # Then 29 lines fit with the totals, 30 and 31 lines carry their last line over to the totals page
    assert page_sizes == {29: [29], 30: [29, 1], 31: [30, 1]}


def test_totals_count_item_lines_and_copies() -> None:
    # Given three lines with 2, 3 and 1 copies
    slip = make_slip(item_count=3)

    # When the slip is rendered
    text = page_texts(render_slip(slip=slip))[0]

    # Then the checklist states the line count and the copy total
    assert "Total copies\n6\n" in text
    assert "All 3 item lines checked, 6 copies packed" in text


def test_batch_has_the_sum_of_pages_and_one_outline_entry_per_order() -> None:
    # Given a day's slips: short, sixty lines, short
    slips = [
        make_slip(order_ref="PL-A-1", item_count=2),
        make_slip(order_ref="PL-B-2", item_count=60),
        make_slip(order_ref="PL-C-3", item_count=5),
    ]

    # When they are rendered as one batch
    pdf = render_slips(slips=slips)

    # Then the batch holds 1 + 2 + 1 pages, each slip numbered on its own, in order
    reader = PdfReader(io.BytesIO(pdf))
    assert len(reader.pages) == sum(len(page_texts(render_slip(slip=slip))) for slip in slips) == 4
    texts = [page.extract_text() for page in reader.pages]
    expected = [("PL-A-1", 1, 1), ("PL-B-2", 1, 2), ("PL-B-2", 2, 2), ("PL-C-3", 1, 1)]
    for text, (order_ref, page_number, pages) in zip(texts, expected, strict=True):
        assert f"Order {order_ref}\n" in text
        assert f"Page {page_number} of {pages}" in text
    outline = reader.outline
    assert [entry.title for entry in outline if isinstance(entry, Destination)] == [
        "PL-A-1",
        "PL-B-2",
        "PL-C-3",
    ]
    assert len(outline) == 3
    # And the third page's barcode belongs to the second order
    assert decoded_barcodes(pdf, page_index=2)["Code128"] == "PL-B-2"


def test_rendering_is_deterministic() -> None:
    # Given one slip
    slip = make_slip(notes="Gift: no prices. Pack flat with a card stiffener.")

    # When it is rendered twice
    first = render_slip(slip=slip)
    second = render_slip(slip=slip)

    # Then the bytes are identical
    assert first == second


def test_notes_are_printed_and_long_product_names_are_cut_with_an_ellipsis() -> None:
    # Given notes and a product name far wider than its column
    long_name = "Fine-art giclée on cotton rag with hand-torn deckle edges and archival sleeve " * 3
    item = SlipItem(
        product=long_name, size="8x10 in", paper="Cotton rag 310 g", copies=1, sizing="fit (border)"
    )
    slip = dataclasses.replace(make_slip(notes="Gift: no prices on the slip."), items=[item])

    # When the slip is rendered
    text = page_texts(render_slip(slip=slip))[0]

    # Then the notes appear whole and the product name starts as given and ends in an ellipsis
    assert "Gift: no prices on the slip." in text
    assert "Fine-art giclée on cotton rag" in text
    assert long_name not in text
    assert "…\n" in text


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"items": []}, "a packing slip needs at least one item"),
        ({"order_ref": "PL-Ł-1"}, "order_ref must be non-empty printable ASCII to fit in a Code128 barcode"),
        ({"order_ref": ""}, "order_ref must be non-empty printable ASCII to fit in a Code128 barcode"),
        ({"ship_to": []}, "ship_to needs 1 to 8 address lines, got 0"),
        ({"ship_to": ["line"] * 9}, "ship_to needs 1 to 8 address lines, got 9"),
        # far beyond what the API accepts: even at the smallest type it would push the items off the page
        ({"ship_to": ["‱" * 5000]}, "ship_to is too long to print whole on a slip's first page"),
    ],
)
def test_slip_data_rejects_what_cannot_be_printed(changes: dict[str, Any], message: str) -> None:
    # Given valid slip data
    slip = make_slip()

    # When one field is replaced by something a slip cannot carry, then construction fails with a reason
    with pytest.raises(ValueError) as error:
        dataclasses.replace(slip, **changes)
    assert str(error.value) == message


def test_item_needs_at_least_one_copy() -> None:
    # Given / when an item line with zero copies is built, then it is refused
    with pytest.raises(ValueError) as error:
        SlipItem(product="Print", size="4x6 in", paper="Gloss", copies=0, sizing="fill")
    assert str(error.value) == "an item line needs at least one copy, got 0"


def test_batch_needs_at_least_one_slip() -> None:
    # Given / when an empty batch is rendered, then it is refused rather than producing a blank page
    with pytest.raises(ValueError) as error:
        render_slips(slips=[])
    assert str(error.value) == "render_slips needs at least one slip"


@pytest.mark.parametrize(
    "ship_to",
    [
        ["山田太郎", "千代田区千代田1-1", "100-0001 東京都", "Japan"],  # kanji and Latin on one line
        ["김민준", "세종대로 110", "04524 서울특별시", "South Korea"],
        ["王小明", "朝阳区建国路88号", "100022 北京市", "China"],
        ["さくら ミュラー", "Łódź ul. 5 ひかり", "90-006", "Poland"],  # kana beside Polish letters
    ],
)
def test_chinese_japanese_and_korean_addresses_print_in_their_own_characters(ship_to: list[str]) -> None:
    # DejaVu has none of them: before, every one of these characters printed as an empty box
    slip = dataclasses.replace(make_slip(item_count=1), ship_to=ship_to)

    text = page_texts(render_slip(slip=slip))[0]

    # (the text extractor breaks a line where its font changes: compared without white space)
    packed = "".join(text.split())
    for line in ship_to:
        assert "".join(line.split()) in packed
    assert "\x00" not in text


def packed_text(pdf: bytes) -> str:
    """Every page's text without white space: a wrapped line is broken where the renderer chose."""
    return "".join("".join(text.split()) for text in page_texts(pdf))


def max_length_address(*, name: str, line1: str, line2: str, city: str, region: str) -> list[str]:
    """The ship-to lines lab.packing.services makes of an address whose every field is at the longest
    api.contact_serializers.AddressSerializer accepts (200, 200, 200, 100, 100 characters; postal code 20)."""
    name, line1, line2, city, region = name[:200], line1[:200], line2[:200], city[:100], region[:100]
    assert (len(name), len(line1), len(line2), len(city), len(region)) == (200, 200, 200, 100, 100)
    return [name, line1, line2, f"{'9' * 20} {city}", f"{region} US"]


MLK_LINE = "1234 North Martin Luther King Junior Blvd Apt 5B"
SHENZHEN_LINE = "深圳市南山区粤海街道科技园南区高新南七道数字技术园B1栋1201室"


def test_a_street_line_wider_than_the_column_wraps_and_keeps_the_flat_number() -> None:
    # Before, the line was cut at the column's width: "…Junior Blvd Apt …", the flat number lost
    slip = dataclasses.replace(
        make_slip(item_count=1), ship_to=["Zoë Müller", MLK_LINE, "Chicago IL 60637", "US"]
    )

    text = page_texts(render_slip(slip=slip))[0]

    # Then the whole line is there, each word whole (Latin text breaks at spaces), and nothing was cut
    assert "".join(MLK_LINE.split()) in "".join(text.split())
    assert "Apt5B" in "".join(text.split())
    for word in MLK_LINE.split():
        assert word in text
    assert "…" not in text


def test_a_chinese_line_wider_than_the_column_wraps_and_keeps_the_building_and_room() -> None:
    slip = dataclasses.replace(
        make_slip(item_count=1), ship_to=["王小明", SHENZHEN_LINE, "518057 深圳市", "China"]
    )

    text = page_texts(render_slip(slip=slip))[0]

    assert SHENZHEN_LINE in "".join(text.split())
    assert "1201室" in "".join(text.split())
    assert "…" not in text


@pytest.mark.parametrize(
    "ship_to",
    [
        max_length_address(
            name="Maximilian Alexander Bartholomew " * 7,
            line1="Apartment 12B, North Martin Luther King Junior Boulevard " * 4,
            line2="Care of the Northlight Photographic Society, Building Seven " * 4,
            city="Llanfairpwllgwyngyll Gogerychwyrndrobwllllantysiliogogogoch " * 2,
            region="Mecklenburg-Vorpommern Westmecklenburg Nordwestmecklenburg " * 2,
        ),
        # a "word" longer than the column: broken by characters
        max_length_address(
            name="W" * 200, line1="M" * 200, line2="Ш" * 200, city="W" * 100, region="M" * 100
        ),
        max_length_address(
            name="欧阳" * 100,
            line1=SHENZHEN_LINE * 7,
            line2="고양시 일산동구 중앙로 1275번길 38-10 " * 8,
            city="東京都千代田区丸の内" * 10,
            region="广东省" * 34,
        ),
        # the widest character DejaVu draws, every field full of it
        max_length_address(
            name="‱" * 200, line1="‱" * 200, line2="‱" * 200, city="‱" * 100, region="‱" * 100
        ),
    ],
    ids=["latin-words", "latin-one-word", "cjk", "widest-glyph"],
)
def test_the_longest_address_the_api_accepts_prints_whole_on_one_page(ship_to: list[str]) -> None:
    slip = dataclasses.replace(make_slip(item_count=1), ship_to=ship_to)

    pdf = render_slip(slip=slip)

    # Then the slip is still one page, and every character of the name and of each line is on it
    texts = page_texts(pdf)
    assert len(texts) == 1
    packed = "".join(texts[0].split())
    for line in ship_to:
        assert "".join(line.split()) in packed
    assert "…" not in texts[0]
    # And the item line and totals are still there, below the address
    assert "Lustre print 1" in texts[0]
    assert "All 1 item line checked, 2 copies packed" in texts[0]


def text_baselines(pdf: bytes, *, page_index: int = 0) -> list[tuple[float, str]]:
    """(baseline y, text) of each piece drawn on a page, from the text matrix ReportLab writes."""
    pieces: list[tuple[float, str]] = []

    def visit(text: str, _cm: Any, tm: Any, _font: Any, _size: Any) -> None:
        if text.strip():
            pieces.append((float(tm[5]), text))

    PdfReader(io.BytesIO(pdf)).pages[page_index].extract_text(visitor_text=visit)
    return pieces


def test_a_wrapped_address_pushes_the_item_table_down_and_never_overlaps_it() -> None:
    # Given the longest address of the widest characters, wrapped over many lines
    ship_to = max_length_address(
        name="‱" * 200, line1="‱" * 200, line2="‱" * 200, city="‱" * 100, region="‱" * 100
    )
    slip = dataclasses.replace(make_slip(item_count=1), ship_to=ship_to)

    pieces = text_baselines(render_slip(slip=slip))

    # Then the lowest address line is above the item table's heading
    lowest_address = min(y for y, text in pieces if "‱" in text)
    product_heading = next(y for y, text in pieces if text.strip() == "Product")
    assert lowest_address > product_heading + 10


def test_the_days_batch_prints_long_addresses_whole() -> None:
    # Given a day's slips, one with a long street line, one with a long Chinese line and the longest name
    long_name = "Maximilian Alexander Bartholomew " * 7
    slips = [
        dataclasses.replace(make_slip(order_ref="PL-A-1"), ship_to=["Zoë Müller", MLK_LINE, "Chicago", "US"]),
        dataclasses.replace(
            make_slip(order_ref="PL-B-2"), ship_to=[long_name[:200], "Pickup at the counter"]
        ),
        dataclasses.replace(make_slip(order_ref="PL-C-3"), ship_to=["王小明", SHENZHEN_LINE, "China"]),
    ]

    texts = page_texts(render_slips(slips=slips))

    # Then each slip is one page carrying its whole address
    assert len(texts) == 3
    packed = ["".join(text.split()) for text in texts]
    assert "".join(MLK_LINE.split()) in packed[0]
    assert "".join(long_name[:200].split()) in packed[1]
    assert SHENZHEN_LINE in packed[2]
    assert not any("…" in text for text in texts)
