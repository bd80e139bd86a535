from decimal import Decimal

import pytest

from printers.media import (
    PrintSize,
    UnknownMediaError,
    media_matches_size,
    pwg_media_for_size,
    size_for_pwg_media,
)


@pytest.mark.parametrize(
    ("width", "height", "expected"),
    [
        (4, 6, "na_index-4x6_4x6in"),
        (6, 4, "na_index-4x6_4x6in"),
        (5, 7, "na_5x7_5x7in"),
        (8, 10, "na_govt-letter_8x10in"),
        (10, 8, "na_govt-letter_8x10in"),
        (11, 14, "na_11x14_11x14in"),
        ("3.5", "5", "oe_photo-l_3.5x5in"),
    ],
)
def test_print_size_maps_to_pwg_media_in_either_orientation(
    width: object, height: object, expected: str
) -> None:
    # given a print size in inches, when mapped, then the PWG name is the same for both orientations
    assert pwg_media_for_size(width_inches=width, height_inches=height) == expected  # type: ignore[arg-type]


def test_unknown_print_size_raises() -> None:
    with pytest.raises(UnknownMediaError, match="7x9"):
        pwg_media_for_size(width_inches=7, height_inches=9)


@pytest.mark.parametrize(
    ("name", "short", "long"),
    [
        ("na_index-4x6_4x6in", "4", "6"),
        ("na_govt-letter_8x10in", "8", "10"),
        ("oe_photo-l_3.5x5in", "3.5", "5"),
        ("custom_6x4in", "4", "6"),
        ("iso_a4_210x297mm", "8.27", "11.69"),
        ("om_photo-10x15_100x150mm", "3.94", "5.91"),
    ],
)
def test_pwg_self_describing_name_parses_to_inches(name: str, short: str, long: str) -> None:
    assert size_for_pwg_media(name) == PrintSize(short_inches=Decimal(short), long_inches=Decimal(long))


@pytest.mark.parametrize("name", ["", "4x6", "na_letter", "na_foo_4x6cm"])
def test_unparseable_media_name_raises(name: str) -> None:
    with pytest.raises(UnknownMediaError):
        size_for_pwg_media(name)


def test_round_trip_for_every_lab_size() -> None:
    for width, height in [(4, 6), (5, 7), (8, 10), (11, 14)]:
        size = size_for_pwg_media(pwg_media_for_size(width_inches=width, height_inches=height))
        assert (size.short_inches, size.long_inches) == (Decimal(width), Decimal(height))


def test_media_matches_size_ignores_orientation_and_rejects_garbage() -> None:
    assert media_matches_size("na_index-4x6_4x6in", width_inches=6, height_inches=4) is True
    assert media_matches_size("na_5x7_5x7in", width_inches=4, height_inches=6) is False
    assert media_matches_size("photo", width_inches=4, height_inches=6) is False


def test_print_size_label() -> None:
    assert PrintSize.of(width_inches="5", height_inches="3.5").label == "3.5x5"
    assert PrintSize.of(width_inches=10, height_inches=8).label == "8x10"


def test_print_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        PrintSize.of(width_inches=0, height_inches=6)
