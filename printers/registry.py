"""The printer backend registry: the one place that knows which backends exist.

Adding a backend is one `BackendKind` entry here (plus its module): the Printer model's choices, the admin's
select, `backend_for` (relative folder targets) and the errors for an unknown kind all read this table.
Backend modules are imported lazily, so hot-folder-only installs never load libcups.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module

from printers.base import PrinterBackend


@dataclass(frozen=True)
class BackendKind:
    kind: str  # stored in Printer.backend
    label: str
    factory: str  # "module:callable" taking (target=..., server=...) and returning a PrinterBackend
    target_help: str
    target_is_folder: bool = False  # a relative target is a folder under HOTFOLDER_ROOT


BACKENDS: dict[str, BackendKind] = {
    spec.kind: spec
    for spec in (
        BackendKind(
            kind="cups",
            label="CUPS queue (IPP)",
            factory="printers.cups_backend:CupsBackend.for_target",
            target_help="the CUPS queue name",
        ),
        BackendKind(
            kind="hotfolder",
            label="Hot folder",
            factory="printers.hotfolder:HotFolderBackend.for_target",
            target_help="a folder path (relative: under HOTFOLDER_ROOT)",
            target_is_folder=True,
        ),
    )
}
KIND_CUPS = "cups"
KIND_HOTFOLDER = "hotfolder"


def backend_choices() -> list[tuple[str, str]]:
    """Choices for Printer.backend (a callable, so adding a backend needs no migration)."""
    return [(spec.kind, spec.label) for spec in BACKENDS.values()]


def backend_kind(kind: str) -> BackendKind:
    try:
        return BACKENDS[kind]
    except KeyError:
        raise ValueError(
            f"unknown printer backend kind {kind!r}; expected one of {', '.join(BACKENDS)}"
        ) from None


def get_backend(*, kind: str, target: str, cups_server: str = "") -> PrinterBackend:
    """The backend object for a printer: `target` means what its kind's `target_help` says."""
    spec = backend_kind(kind)
    if not target:
        raise ValueError(f"printer backend {kind!r} needs a target ({spec.target_help})")
    module_name, _, attribute = spec.factory.partition(":")
    factory: object = import_module(module_name)
    for name in attribute.split("."):
        factory = getattr(factory, name)
    backend = factory(target=target, server=cups_server)  # type: ignore[operator]
    assert isinstance(backend, PrinterBackend)
    return backend
