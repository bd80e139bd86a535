"""The contract's types, as a client generated from the schema reads them: what the API always sends is
required, objects it sends are typed field by field (an order's `payment`, a photo's `failure`, addresses),
a problem declares every member a refusal adds (read from the raise sites themselves) and its `code` is one
of the stable codes, and `Retry-After` is declared where the server sends it."""

from __future__ import annotations

import ast
import builtins
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from drf_spectacular.generators import SchemaGenerator

from api.errors import STATUS_BY_CODE, ApiError
from lab.catalog.demo import catalog_seed_demo
from lab.orders.models import Asset
from tests.builders import ADDRESS, SKU, UserFactory, asset_for, token_client

REPO = Path(__file__).resolve().parents[2]
RFC_9457_MEMBERS = {"type", "title", "status", "code", "detail"}


@pytest.fixture(scope="module")
def schema(django_db_setup, django_db_blocker) -> dict[str, Any]:
    with django_db_blocker.unblock():
        # drf-spectacular ships py.typed but leaves its schema generator unannotated.
        generated: dict[str, Any] = SchemaGenerator().get_schema(request=None, public=True)  # type: ignore[no-untyped-call]
    return generated


def component(schema: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = schema["components"]["schemas"][name]
    return found


def resolved(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """A property's schema with its `$ref` (or drf-spectacular's `allOf: [$ref]` wrapping) followed."""
    if "allOf" in node and len(node["allOf"]) == 1:
        node = node["allOf"][0]
    ref = node.get("$ref")
    return component(schema, ref.rsplit("/", 1)[-1]) if ref else node


# --- what is always sent is required -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["AssetOutput", "OrderOutput", "OrderCreatedOutput", "OrderSummaryOutput", "AccountOutput"]
)
def test_every_field_an_output_always_sends_is_required(schema, name):
    declared = component(schema, name)

    assert "status" in declared["required"] or name == "AccountOutput"
    assert set(declared["properties"]) - set(declared["required"]) == set()


# --- objects are typed field by field ----------------------------------------------------------------------


def test_an_order_s_payment_a_photo_s_failure_and_addresses_are_typed(schema):
    order = component(schema, "OrderOutput")["properties"]
    payment = resolved(schema, order["payment"])
    failure = resolved(schema, component(schema, "AssetOutput")["properties"]["failure"])
    addresses = [
        resolved(schema, order["shipping_address"]),
        resolved(schema, component(schema, "AccountOutput")["properties"]["address"]),
    ]

    assert (
        set(payment["properties"])
        == set(payment["required"])
        == {"status", "payment_intent", "client_secret"}
    )
    assert resolved(schema, payment["properties"]["status"])["enum"][:2] == ["none", "requires_payment"]
    assert set(failure["properties"]) == set(failure["required"]) == {"code", "message"}
    for address in addresses:
        assert set(address["properties"]) == {
            "name",
            "line1",
            "line2",
            "city",
            "region",
            "postal_code",
            "country",
        }


@dataclass
class Untyped:
    """Where a body holds a member its schema does not describe, or an object described by no properties."""

    found: list[str] = field(default_factory=list)

    def walk(self, schema: dict[str, Any], node: dict[str, Any], value: Any, at: str) -> None:
        node = resolved(schema, node)
        if isinstance(value, dict):
            properties = node.get("properties")
            if not properties:
                self.found.append(f"{at}: an object with no declared properties")
                return
            for key, each in value.items():
                if key not in properties:
                    self.found.append(f"{at}.{key}: not declared")
                else:
                    self.walk(schema, properties[key], each, f"{at}.{key}")
        elif isinstance(value, list) and value:
            for index, each in enumerate(value):
                self.walk(schema, node.get("items", {}), each, f"{at}[{index}]")


@pytest.mark.django_db
def test_an_order_a_failed_photo_and_an_account_are_described_member_by_member(schema, api, stripe_api):
    catalog_seed_demo()
    user = UserFactory.create()
    client = token_client(api, user)
    failed = asset_for(user)
    Asset.objects.filter(pk=failed.pk).update(
        status=Asset.Status.FAILED, failure_code="corrupt_image", failure_message="The file is damaged."
    )
    item = {"sku": SKU, "asset": str(asset_for(user).pk), "copies": 1, "sizing": "fill"}
    order = client.post(
        "/api/v1/orders",
        {"items": [item], "shipping_method": "standard", "shipping_address": ADDRESS},
        format="json",
        HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()),
    )
    assert order.status_code == 201, order.json()
    bodies = {
        "OrderCreatedOutput": order.json(),
        "OrderOutput": client.get(f"/api/v1/orders/{order.json()['ref']}").json(),
        "AssetOutput": client.get(f"/api/v1/assets/{failed.pk}").json(),
        "AccountOutput": client.get("/api/v1/me").json(),
    }
    assert bodies["AssetOutput"]["failure"] == {"code": "corrupt_image", "message": "The file is damaged."}

    untyped = Untyped()
    for name, body in bodies.items():
        untyped.walk(schema, {"$ref": f"#/components/schemas/{name}"}, body, name)

    assert untyped.found == []


# --- problems ----------------------------------------------------------------------------------------------

SCANNED = ("lab", "api", "workers", "printers")
PROBLEM_RESPONSE_ARGUMENTS = {"status_code", "code", "detail"}


def _sources() -> Iterator[tuple[str, ast.Module]]:
    for root in SCANNED:
        for path in sorted((REPO / root).rglob("*.py")):
            if "migrations" not in path.parts:
                yield str(path.relative_to(REPO)), ast.parse(path.read_text(), filename=str(path))


def _callee(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    return call.func.attr if isinstance(call.func, ast.Attribute) else None


def _bound_at_module_level(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
        elif isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
    return names


@dataclass
class RaiseSites:
    """The detail keywords the code passes to problems: every DomainError's raise site (its keyword arguments;
    of a subclass with an `__init__` of its own, what that passes to DomainError's), a `details[...]` added
    to a raised error, and api/errors.py's own members (`problem_response(...)` and its `extra[...]`)."""

    keywords: dict[str, set[str]] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)

    def add(self, keyword: str, where: str) -> None:
        self.keywords.setdefault(keyword, set()).add(where)

    @classmethod
    def read(cls) -> RaiseSites:
        sources = list(_sources())
        bases: dict[str, set[str]] = {}
        inits: set[str] = set()
        for _, tree in sources:
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef):
                    bases.setdefault(node.name, set()).update(
                        ast.unparse(base).split(".")[-1] for base in node.bases
                    )
                    if any(
                        isinstance(each, ast.FunctionDef) and each.name == "__init__" for each in node.body
                    ):
                        inits.add(node.name)
        errors = {"DomainError"}
        while grown := {name for name, of in bases.items() if of & errors} - errors:
            errors |= grown
        sites = cls()
        for path, tree in sources:
            sites._read_module(path, tree, errors=errors, own_init=(inits & errors) - {"DomainError"})
        return sites

    def _read_module(self, path: str, tree: ast.Module, *, errors: set[str], own_init: set[str]) -> None:
        bound = _bound_at_module_level(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.name in own_init:
                for call in ast.walk(node):
                    if isinstance(call, ast.Call) and ast.unparse(call.func) == "super().__init__":
                        self._keywords(call, f"{path}:{call.lineno}")
            elif isinstance(node, ast.Call) and _callee(node) in errors - own_init:
                self._keywords(node, f"{path}:{node.lineno}")
            elif (
                isinstance(node, ast.Raise)
                and isinstance(node.exc, ast.Call)
                and isinstance(node.exc.func, ast.Name)
                and node.exc.func.id not in bound
                and node.exc.func.id not in dir(builtins)
            ):  # `raise kind(...)`: an error class held in a variable
                self._keywords(node.exc, f"{path}:{node.lineno}")
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    if (
                        isinstance(target, ast.Subscript)
                        and isinstance(target.value, ast.Attribute)
                        and target.value.attr == "details"
                        and isinstance(target.slice, ast.Constant)
                    ):
                        self.add(str(target.slice.value), f"{path}:{node.lineno}")
            elif isinstance(node, ast.FunctionDef) and path == "api/errors.py":
                self._problem_members(node, path)

    def _keywords(self, call: ast.Call, where: str) -> None:
        for keyword in call.keywords:
            if keyword.arg is None:
                self.unreadable.append(f"{where}: **{ast.unparse(keyword.value)}")
            else:
                self.add(keyword.arg, where)

    def _problem_members(self, function: ast.FunctionDef, path: str) -> None:
        spread: set[str] = set()
        for call in ast.walk(function):
            if isinstance(call, ast.Call) and _callee(call) == "problem_response":
                for keyword in call.keywords:
                    if keyword.arg is None and isinstance(keyword.value, ast.Name):
                        spread.add(keyword.value.id)
                    elif keyword.arg is not None and keyword.arg not in PROBLEM_RESPONSE_ARGUMENTS:
                        self.add(keyword.arg, f"{path}:{call.lineno}")
        for node in ast.walk(function):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if (
                        isinstance(target, ast.Subscript)
                        and isinstance(target.value, ast.Name)
                        and target.value.id in spread
                        and isinstance(target.slice, ast.Constant)
                    ):
                        self.add(str(target.slice.value), f"{path}:{node.lineno}")


def test_a_problem_declares_every_member_a_raise_site_adds(schema):
    sites = RaiseSites.read()
    problem = component(schema, "Problem")

    assert sites.unreadable == []
    # a few the reviewer met in bodies, so that the reading above cannot come back empty unnoticed
    assert {"asset_status", "failure_code", "position", "crop_aspect", "max_pixels", "raster_code"} <= set(
        sites.keywords
    )
    undeclared = {
        name: sorted(where) for name, where in sites.keywords.items() if name not in problem["properties"]
    }
    assert undeclared == {}
    assert set(problem["properties"]) - RFC_9457_MEMBERS == set(sites.keywords)
    assert problem["additionalProperties"] is True
    assert set(problem["required"]) == RFC_9457_MEMBERS


def test_a_problem_s_code_is_one_of_the_stable_codes(schema):
    code = resolved(schema, component(schema, "Problem")["properties"]["code"])

    assert set(code["enum"]) == {str(each) for each in STATUS_BY_CODE} | {str(each) for each in ApiError}


# --- Retry-After --------------------------------------------------------------------------------------------


def test_retry_after_is_declared_where_the_server_sends_it(schema):
    operations = [(m.upper(), p, op) for p, item in schema["paths"].items() for m, op in item.items()]
    declaring = {
        (method, path, status)
        for method, path, operation in operations
        for status, response in operation["responses"].items()
        if "Retry-After" in response.get("headers", {})
    }
    sending = {
        (method, path, status)
        for method, path, operation in operations
        for status in operation["responses"]
        if status in ("429", "503", "507")
    } | {("POST", "/api/v1/webhook-deliveries/{delivery_id}/redeliver", "409")}

    assert sending <= declaring
    assert ("POST", "/api/v1/assets", "507") in sending
