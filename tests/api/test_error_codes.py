"""Error codes are enums, one per app (lab/<app>/errors.py, lab/lib/errors.py, api/errors.py): each code has
an HTTP status in api/errors.py's table, no two apps share a code, and every code is a snake_case identifier.

Raise sites pass an enum member and never an HTTP status; only lab/gate/access.py still may, until its rework.
"""

from __future__ import annotations

import ast
import importlib
import re
from collections import Counter
from enum import StrEnum
from pathlib import Path

from api.errors import _DRF_CODES, STATUS_BY_CODE, ApiError, http_status
from lab.lib.errors import DomainError, NotFound
from lab.orders.errors import OrderError

ROOT = Path(__file__).resolve().parents[2]
# Every app's errors.py (lab/lib/errors.py among them), and the API's own codes.
APP_ERROR_MODULES = sorted({f"lab.{path.parent.name}.errors" for path in (ROOT / "lab").glob("*/errors.py")})
ERROR_MODULES = [*APP_ERROR_MODULES, "api.errors"]
# Raises a str code and an HTTP status until its owner's rework lands (see DomainError.status).
TRANSITIONAL = {Path("lab/gate/access.py")}
SNAKE_CASE = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")


def code_enums() -> list[type[StrEnum]]:
    enums = []
    for name in ERROR_MODULES:
        module = importlib.import_module(name)
        enums += [
            value
            for value in vars(module).values()
            if isinstance(value, type) and issubclass(value, StrEnum) and value.__module__ == name
        ]
    return enums


def all_codes() -> list[StrEnum]:
    return [member for enum in code_enums() for member in enum]


def test_every_app_has_its_code_enum():
    assert sorted(enum.__name__ for enum in code_enums()) == [
        "AccountError",
        "ApiError",
        "AuditError",
        "CatalogError",
        "CommonError",
        "CustomerDataError",
        "NotifyError",
        "OrderError",
        "PackingError",
        "ProductionError",
        "StaffError",
    ]


def test_every_code_has_an_http_status_in_the_api_table():
    # DRF's own refusals keep the status of DRF's exception (401 may become 403 without a challenge).
    drf_only = (set(_DRF_CODES.values()) | {ApiError.ERROR}) - set(STATUS_BY_CODE)

    missing = [f"{type(code).__name__}.{code.name}" for code in all_codes() if code not in STATUS_BY_CODE]

    assert sorted(missing) == sorted(f"ApiError.{code.name}" for code in drf_only)


def test_the_table_holds_only_enum_codes_and_error_statuses():
    codes = set(all_codes())

    strays = [key for key in STATUS_BY_CODE if not isinstance(key, StrEnum) or key not in codes]
    odd_statuses = {code: status for code, status in STATUS_BY_CODE.items() if not 400 <= status <= 599}

    assert (strays, odd_statuses) == ([], {})


def test_a_drf_code_in_the_table_has_the_status_of_drfs_exception():
    disagreeing = {
        code: (STATUS_BY_CODE[code], exception.status_code)
        for exception, code in _DRF_CODES.items()
        if code in STATUS_BY_CODE and STATUS_BY_CODE[code] != exception.status_code
    }

    assert disagreeing == {}


def test_codes_are_unique_across_apps():
    counts = Counter(str(code) for code in all_codes())

    assert {code: count for code, count in counts.items() if count > 1} == {}


def test_each_code_is_a_snake_case_identifier_named_after_its_value():
    malformed = [
        f"{type(code).__name__}.{code.name} = {str(code)!r}"
        for code in all_codes()
        if not (SNAKE_CASE.fullmatch(code) and code.isidentifier() and code.name == code.upper())
    ]

    assert malformed == []


def test_the_status_comes_from_the_code_and_a_code_outside_the_table_from_its_kind():
    class Unlisted(StrEnum):
        SOMETHING_MISSING = "something_missing"

    listed = NotFound(OrderError.ORDER_NOT_FOUND, "No such order.")
    unlisted = NotFound(Unlisted.SOMETHING_MISSING, "Nothing.")

    assert (http_status(listed), http_status(unlisted)) == (404, 404)
    assert http_status(DomainError(OrderError.ORDER_NOT_CANCELLABLE, "Shipped.")) == 409


def _domain_error_kinds(trees: dict[Path, ast.Module]) -> set[str]:
    """DomainError and every class defined in lab/ or api/ that derives from it, by name."""
    kinds = {"DomainError"}
    classes = [node for tree in trees.values() for node in ast.walk(tree) if isinstance(node, ast.ClassDef)]
    grew = True
    while grew:
        before = len(kinds)
        kinds |= {
            node.name
            for node in classes
            if any(isinstance(base, ast.Name) and base.id in kinds for base in node.bases)
        }
        grew = len(kinds) > before
    return kinds


def test_raise_sites_pass_a_code_enum_member_and_no_http_status():
    trees = {
        path.relative_to(ROOT): ast.parse(path.read_text())
        for package in ("lab", "api")
        for path in (ROOT / package).rglob("*.py")
        if "migrations" not in path.parts
    }
    kinds = _domain_error_kinds(trees)

    offenders = []
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or path in TRANSITIONAL:
                continue
            name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
            if name not in kinds:
                continue
            first = node.args[0] if node.args else None
            if isinstance(first, ast.JoinedStr) or (
                isinstance(first, ast.Constant) and isinstance(first.value, str)
            ):
                offenders.append(f"{path}:{node.lineno}: {name} with a str code")
            if any(keyword.arg == "status" for keyword in node.keywords):
                offenders.append(f"{path}:{node.lineno}: {name} with an HTTP status")

    assert offenders == []
