"""Error codes the staff pages raise themselves (form input), shown as messages like the services' refusals.

Never answered by the API; api/errors.py still gives them a status, as it does every code.
"""

from __future__ import annotations

from enum import StrEnum


class StaffError(StrEnum):
    INVALID_INPUT = "invalid_input"  # a staff form did not validate; the message says which field
    NO_PRINTER = "no_printer"  # a maintenance ticket opened from a job that has no printer yet
