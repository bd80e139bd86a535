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


# A test name in a README's backticks (`test_…`, also after `path.py::`): not part of a longer word, a module
# (`test_x.py`) or a folder. A name ending in "…" or "_…" is the start of a longer one.
CITED_TEST_NAME = re.compile(r"(?<![\w/.-])(test_[a-z0-9_]+)(…?)(?![\w/.]|…)")
# A code span: it may wrap onto the next line, never past the end of its paragraph.
CODE_SPAN = re.compile(r"`((?:[^`\n]|\n(?![ \t]*\n))+)`")


def readmes() -> list[Path]:
    root = TESTS.parent
    return [root / "README.md", root / "deploy" / "README.md", *sorted((root / "bench").rglob("README.md"))]


def cited_test_names(readme: Path) -> list[tuple[int, str, bool]]:
    """(line, name, whether it is cut off) of each test name in `readme`'s code spans; fenced blocks left out
    (their lines blanked, so the line numbers stay)."""
    kept, in_fence = [], False
    for line in readme.read_text().splitlines():
        fence = line.lstrip().startswith("```")
        in_fence ^= fence
        kept.append("" if fence or in_fence else line)
    text = "\n".join(kept)
    return [
        (text.count("\n", 0, span.start(1) + name.start()) + 1, name.group(1), name.group(2) == "…")
        for span in CODE_SPAN.finditer(text)
        for name in CITED_TEST_NAME.finditer(span.group(1))
    ]


def test_every_test_a_readme_cites_exists() -> None:
    # given every test function defined under tests/
    defined = {
        node.name
        for path in TESTS.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_")
    }

    # when each test name the READMEs cite is looked up (a cut-off one as the start of a name)
    missing = [
        f"{readme.relative_to(TESTS.parent)}:{line}: {name}{'…' if cut else ''}"
        for readme in readmes()
        for line, name, cut in cited_test_names(readme)
        if not (any(test.startswith(name) for test in defined) if cut else name in defined)
    ]

    # then every one is there
    assert missing == [], "\n".join(["tests the READMEs cite that do not exist:", *missing])


# One app's leaf migrations (`leaf_nodes("production")`): migrating that app back also unapplies the other
# apps' migrations that depend on it (orders/0017 on production/0020), and restoring that app's leaves alone
# left them unapplied for every later test on the worker (a fresh-clone CI lost the upload keys' table).
ONE_APPS_LEAVES = re.compile(r"\.leaf_nodes\(\s*[^\s)]")


def test_a_migration_test_restores_every_apps_leaf_migrations() -> None:
    offenders = [
        f"{path.relative_to(TESTS.parent)}:{number}: {line.strip()}"
        for path in python_files()
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if ONE_APPS_LEAVES.search(line) and path.name != "migrations.py"
    ]

    assert offenders == []
