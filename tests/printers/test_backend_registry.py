"""Adding a printer backend is one registry entry: the model's choices, the admin and backend_for follow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ValidationError

from lab.production.backends import backend_for
from lab.production.models import Printer
from printers import registry
from printers.hotfolder import HotFolderBackend


class SpoolBackend(HotFolderBackend):
    """A stand-in for a new backend kind: a hot folder under another name."""

    @classmethod
    def for_target(cls, *, target: str, server: str = "") -> SpoolBackend:
        return cls(folder=target)


@pytest.fixture
def spool_kind(monkeypatch: pytest.MonkeyPatch) -> registry.BackendKind:
    spec = registry.BackendKind(
        kind="spool",
        label="Spool folder",
        factory=f"{__name__}:SpoolBackend.for_target",
        target_help="a folder",
        target_is_folder=True,
    )
    monkeypatch.setitem(registry.BACKENDS, "spool", spec)
    return spec


@pytest.mark.django_db
def test_a_registered_backend_is_a_valid_printer_choice_and_is_built_for_the_printer(
    spool_kind: registry.BackendKind, settings: Any, tmp_path: Path
) -> None:
    settings.HOTFOLDER_ROOT = str(tmp_path)
    printer = Printer(name="spool-1", backend="spool", target="spool-1", dpi=300)

    printer.full_clean(exclude=["media_sizes", "papers", "state_reasons", "icc_profile"])
    backend = backend_for(printer)

    choices = Printer._meta.get_field("backend").choices
    assert choices is not None
    assert ("spool", "Spool folder") in choices
    assert isinstance(backend, SpoolBackend)
    assert backend.folder == tmp_path / "spool-1"  # a relative folder target resolves under HOTFOLDER_ROOT


@pytest.mark.django_db
def test_an_unregistered_backend_is_refused_by_the_model_and_by_the_registry() -> None:
    printer = Printer(name="lpd-1", backend="lpd", target="x", dpi=300)

    with pytest.raises(ValidationError) as refused:
        printer.full_clean(exclude=["media_sizes", "papers", "state_reasons", "icc_profile"])
    assert "backend" in refused.value.message_dict
    with pytest.raises(ValueError, match="unknown printer backend kind 'lpd'"):
        backend_for(printer)
