"""GPS properties out of XMP packets, blanked with spaces at the same length (JPEG APP1, PNG text chunks,
TIFF tag 700, HEIC XMP items); no pixel is re-encoded.
"""

from __future__ import annotations

import bisect
import re
from typing import Final

# A GPS property of any namespace prefix (exif:GPSLatitude, drone-dji:GpsLatitude), as an attribute or an
# element (self-closed or with content, nested ones included). Elements are found by their opening and
# closing tags separately, each pattern linear: one pattern spanning an element (`<(name)[^>]*>.*?</\1>`)
# ran to the end of the packet from every unclosed opening, and 200 KB of "<a:gps>" took 36 s.
_XMP_GPS_ATTRIBUTE: Final = re.compile(rb"""\s[\w.-]+:gps\w*\s*=\s*("[^"]*"|'[^']*')""", re.IGNORECASE)
_XMP_GPS_OPENING: Final = re.compile(rb"<([\w.-]+:gps\w*)", re.IGNORECASE)
_XMP_GPS_CLOSING: Final = re.compile(rb"</([\w.-]+:gps\w*)\s*>", re.IGNORECASE)


def blank_xmp_gps(packet: bytes) -> bytes:
    """The XMP packet with its GPS properties turned into spaces (the same length, still well-formed); a
    packet that still says "gps" after that is blanked whole."""

    def spaces(match: re.Match[bytes]) -> bytes:
        return b" " * len(match.group(0))

    blanked = bytearray(packet)
    for start, stop in _gps_elements(packet):
        blanked[start:stop] = b" " * (stop - start)
    result = _XMP_GPS_ATTRIBUTE.sub(spaces, bytes(blanked))
    if b"gps" in result.lower():
        return b" " * len(packet)
    return result


def _gps_elements(packet: bytes) -> list[tuple[int, int]]:
    """(start, stop) of each outermost GPS element: from its opening tag to the first closing tag of its
    name after it, or the tag alone when self-closed. An opening with no closing is left (the packet is then
    blanked whole). Linear: closing tags are indexed once by name, and each opening looks its own up."""
    lowered = packet.lower()  # names match whatever their case, as XMP readers of GPS* properties do
    closings: dict[bytes, list[tuple[int, int]]] = {}
    for match in _XMP_GPS_CLOSING.finditer(lowered):
        closings.setdefault(match.group(1), []).append((match.start(), match.end()))
    elements: list[tuple[int, int]] = []
    covered = 0
    for match in _XMP_GPS_OPENING.finditer(lowered):
        if match.start() < covered:
            continue  # inside an element already blanked
        tag_end = lowered.find(b">", match.end())
        if tag_end < 0:
            break  # no later opening is closed either
        if lowered[tag_end - 1] == ord("/"):
            stop = tag_end + 1
        else:
            found = closings.get(match.group(1), [])
            index = bisect.bisect_left(found, (tag_end + 1, 0))
            if index == len(found):
                continue
            stop = found[index][1]
        elements.append((match.start(), stop))
        covered = stop
    return elements
