"""The lab's own rule for after-commit hooks: a robust hook is a named function, never a functools.partial.
Django's robust hook logs a failure by the callable's `__qualname__`, which a partial lacks: the
AttributeError then escapes after the commit (a 500 for a change that was made) and the hooks after it never
run."""

from __future__ import annotations

import ast
from pathlib import Path

LAB = Path(__file__).resolve().parent.parent / "lab"


def _is_partial(node: ast.expr) -> bool:
    """`partial(…)` or `functools.partial(…)`."""
    if not isinstance(node, ast.Call):
        return False
    function = node.func
    return (isinstance(function, ast.Name) and function.id == "partial") or (
        isinstance(function, ast.Attribute) and function.attr == "partial"
    )


def _is_robust_on_commit(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    function = node.func
    name = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")
    return name == "on_commit" and any(
        keyword.arg == "robust" and not (isinstance(keyword.value, ast.Constant) and not keyword.value.value)
        for keyword in node.keywords
    )


def robust_partial_hooks(source: str) -> list[int]:
    """The lines of `on_commit(partial(…), robust=…)` calls in one module's source (robust unless it is a
    literal False)."""
    return [
        node.lineno
        for node in ast.walk(ast.parse(source))
        if _is_robust_on_commit(node)
        and isinstance(node, ast.Call)
        and node.args
        and _is_partial(node.args[0])
    ]


def test_the_scan_finds_a_robust_partial_hook_however_it_is_written() -> None:
    source = (
        "transaction.on_commit(partial(f, a=1), robust=True)\n"
        "on_commit(functools.partial(f, 1), using='default', robust=True)\n"
        "transaction.on_commit(partial(f, a=1))\n"
        "transaction.on_commit(named, robust=True)\n"
        "transaction.on_commit(partial(f, a=1), robust=False)\n"
    )

    assert robust_partial_hooks(source) == [1, 2]


def test_no_robust_on_commit_hook_in_the_lab_is_a_partial() -> None:
    offenders = [
        f"{path.relative_to(LAB.parent)}:{line}"
        for path in sorted(LAB.rglob("*.py"))
        for line in robust_partial_hooks(path.read_text(encoding="utf-8"))
    ]

    assert offenders == []
