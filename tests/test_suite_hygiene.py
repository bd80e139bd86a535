"""The suite's own rules: a test module imports helpers from tests/builders and tests/support, never from
another test module (not even in a script it hands to a subprocess), and the shared builders live in one
place."""

from __future__ import annotations

import ast
import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent
# An import of a test module (`tests.x.test_y`, by `from … import` or `import`), in code or inside a string
# (a script handed to a subprocess).
IMPORT_FROM_A_TEST_MODULE = re.compile(r"\b(?:from|import)\s+tests(?:\.\w+)*\.test_\w*")
# The builders more than one area needs; each is defined in tests/builders only.
SHARED_BUILDERS = {
    "UserFactory",
    "ProductFactory",
    "person",
    "client_as",
    "asset_for",
    "order_with_items",
    "order_pay",
    "paid_order",
    "released_order",
    "ready_to_pack_order",
    "order_for",
    "order_move",
    "hotfolder_printer",
    "job_walk",
    "floor_state",
}


def python_files() -> list[Path]:
    return sorted(path for path in TESTS.rglob("*.py") if path != Path(__file__).resolve())


def test_no_module_imports_from_a_test_module() -> None:
    offenders = [
        f"{path.relative_to(TESTS.parent)}:{number}: {line.strip()}"
        for path in python_files()
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if IMPORT_FROM_A_TEST_MODULE.search(line)
    ]

    assert offenders == []


def test_the_shared_builders_are_defined_only_in_tests_builders() -> None:
    builders = TESTS / "builders"
    elsewhere = sorted(
        f"{path.relative_to(TESTS.parent)}:{node.lineno}: {node.name}"
        for path in python_files()
        if builders not in path.parents
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.ClassDef) and node.name in SHARED_BUILDERS
    )
    other_builder_modules = sorted(
        str(path.relative_to(TESTS.parent))
        for path in python_files()
        if path.stem in {"builders", "factories"} and builders not in path.parents
    )

    assert (elsewhere, other_builder_modules) == ([], [])
