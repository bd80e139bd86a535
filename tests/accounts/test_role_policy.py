"""The role policy is one table (lab.accounts.roles); this pins it, so a change of who may do what is a
deliberate change of this test too."""

from __future__ import annotations

from lab.accounts import roles
from lab.accounts.roles import Role

T, P, S, AU, AD = Role.TECHNICIAN, Role.PACKER, Role.SUPERVISOR, Role.AUDITOR, Role.ADMIN


def test_who_may_do_what() -> None:
    policy = {
        "floor": roles.FLOOR_ROLES,
        "board (read)": roles.BOARD_READER_ROLES,
        "quality check": roles.QC_ROLES,
        "packing": roles.PACKING_ROLES,
        "cancel in production": roles.SUPERVISOR_ROLES,
        "supervisor's view": roles.SUPERVISOR_VIEW_ROLES,
        "approve a maintenance ticket": roles.TICKET_APPROVER_ROLES,
        "audit console": roles.AUDITOR_ROLES,
    }

    assert policy == {
        "floor": {T, S, AD},
        "board (read)": {T, S, AD, AU},
        "quality check": {T, S, AD, P},
        "packing": {P, S, AD},
        "cancel in production": {S, AD},
        "supervisor's view": {S, AD, T},
        "approve a maintenance ticket": {S},
        "audit console": {AU, AD},
    }


def test_no_module_defines_its_own_role_tuple() -> None:
    """Role sets are named only in lab.accounts.roles; elsewhere they are imported."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    offenders = [
        str(path.relative_to(root))
        for folder in ("lab", "api")
        for path in (root / folder).rglob("*.py")
        if "migrations" not in path.parts
        and path != root / "lab" / "accounts" / "roles.py"
        and any(
            line.lstrip().startswith(("(Role.", "frozenset({Role.")) or "_ROLES = (Role." in line
            for line in path.read_text().splitlines()
        )
    ]
    assert offenders == []
