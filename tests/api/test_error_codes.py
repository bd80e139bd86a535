"""Error codes are enums, one per app (lab/<app>/errors.py, lab/lib/errors.py, api/errors.py): each code has
an HTTP status in api/errors.py's table, no two apps share a code, and every code is a snake_case identifier.

Raise sites pass an enum member and never an HTTP status, and no error class carries one; the lab's own pages
(mapping kinds, as lab/ never imports api/) answer the gate's refusals with the API table's statuses.
"""

from __future__ import annotations

import ast
import importlib
import re
from collections import Counter
from enum import StrEnum
from pathlib import Path

from api.errors import _DRF_CODES, STATUS_BY_CODE, ApiError, http_status
from lab.gate.errors import GateError
from lab.gate.refusals import REFUSALS, AuditUnavailable, ImageGone, ImageNotFound
from lab.gate.views import error_status
from lab.lib.errors import Conflict, DomainError, NotFound, PermissionDenied
from lab.orders.errors import OrderError

ROOT = Path(__file__).resolve().parents[2]
# Every app's errors.py (lab/lib/errors.py among them), and the API's own codes.
APP_ERROR_MODULES = sorted({f"lab.{path.parent.name}.errors" for path in (ROOT / "lab").glob("*/errors.py")})
ERROR_MODULES = [*APP_ERROR_MODULES, "api.errors"]
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
        "CatalogError",
        "CommonError",
        "CustomerDataError",
        "GateError",
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


def test_the_lab_pages_answer_the_gates_refusals_with_the_apis_statuses():
    """lab.gate.views.error_status (the photo URLs, the auditor console) maps kinds, the API maps codes: each
    code of the gate app, raised with the kind its raise site uses, answers the same on both."""
    refusals: list[DomainError] = [kind(code, message) for code, (kind, message) in REFUSALS.items()]
    refusals += [
        ImageNotFound(OrderError.ASSET_NOT_FOUND, "No such photo."),
        ImageGone(GateError.IMAGE_UNAVAILABLE, "Purged."),
        AuditUnavailable(GateError.AUDIT_UNAVAILABLE, "Not recorded."),
        NotFound(GateError.ORDER_ITEM_NOT_FOUND, "No such item."),
        PermissionDenied(GateError.NOT_AN_AUDITOR, "Auditors only."),
        DomainError(GateError.NOTE_REQUIRED, "Write a note."),
        NotFound(GateError.REVIEW_ITEM_NOT_FOUND, "No such item."),
        Conflict(GateError.ALREADY_SIGNED_OFF, "Signed off."),
        PermissionDenied(GateError.OWN_RECORD, "Not your own."),
        Conflict(GateError.REVIEW_DAY_NOT_OVER, "Not over."),
        PermissionDenied(GateError.REQUEST_FROM_ANOTHER_SITE, "From elsewhere."),
    ]

    statuses = {str(error.code): (http_status(error), error_status(error)) for error in refusals}

    assert statuses == {
        "image_access_denied": (403, 403),
        "image_not_found": (404, 404),
        "image_method_not_allowed": (405, 405),
        "asset_not_found": (404, 404),
        "image_unavailable": (410, 410),
        "audit_unavailable": (503, 503),
        "order_item_not_found": (404, 404),
        "not_an_auditor": (403, 403),
        "note_required": (400, 400),
        "review_item_not_found": (404, 404),
        "already_signed_off": (409, 409),
        "own_record": (403, 403),
        "review_day_not_over": (409, 409),
        "request_from_another_site": (403, 403),
    }
    # A new GateError code is listed above, with the kind its raise site uses.
    assert set(GateError) - statuses.keys() == set()


def _source_trees() -> dict[Path, ast.Module]:
    return {
        path.relative_to(ROOT): ast.parse(path.read_text())
        for package in ("lab", "api")
        for path in (ROOT / package).rglob("*.py")
        if "migrations" not in path.parts
    }


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
    trees = _source_trees()
    kinds = _domain_error_kinds(trees)

    offenders = []
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
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


def test_no_error_class_carries_an_http_status():
    """A kind (or a class deriving from one) that sets `status` would be a second table, in the service."""
    trees = _source_trees()
    kinds = _domain_error_kinds(trees)

    offenders = []
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.ClassDef) or node.name not in kinds:
                continue
            # `status = …` in the class body, or `self.status = …` in any of its methods.
            assigned = {
                target.id
                for statement in node.body
                if isinstance(statement, ast.Assign | ast.AnnAssign)
                for target in (statement.targets if isinstance(statement, ast.Assign) else [statement.target])
                if isinstance(target, ast.Name)
            } | {
                child.attr
                for child in ast.walk(node)
                if isinstance(child, ast.Attribute) and isinstance(child.ctx, ast.Store)
            }
            if "status" in assigned:
                offenders.append(f"{path}:{node.lineno}: {node.name} sets an HTTP status")

    assert offenders == []
