"""Every DRF throttle of the lab lifted, for the benchmarks' web servers: a benchmark measures speed, not the
limits, and one customer places hundreds of orders. Read from lab/settings.py's own `API_…_THROTTLE`
variables, so a throttle added later is lifted too: each benchmark listed its own names, and the order-request
throttle added on 2026-12-06 (120 an hour per customer) stopped the intake benchmark with 429s."""

from __future__ import annotations

import re
from pathlib import Path

SETTINGS = Path(__file__).resolve().parents[1] / "lab" / "settings.py"
LIFTED = "1000000/min"


def throttle_variables() -> list[str]:
    """The environment variables lab/settings.py reads a throttle rate from, in its order."""
    names = re.findall(r"""os\.environ\.get\(\s*["'](API_[A-Z_]+_THROTTLE)["']""", SETTINGS.read_text())
    return list(dict.fromkeys(names))


def throttles_lifted() -> dict[str, str]:
    """Each throttle variable set to a rate no benchmark reaches."""
    return {name: LIFTED for name in throttle_variables()}
