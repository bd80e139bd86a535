"""The auditor console's exports: the filtered records as CSV, and the whole chain with its signed
checkpoints as a zip to verify offline. Each writes an ``audit.export`` record first."""

from __future__ import annotations

import csv
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

from django.http import FileResponse, HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.template.loader import render_to_string
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from lab.accounts.roles import primary_role
from lab.audit.configured import public_key
from lab.audit.export import audit_export
from lab.audit.export_format import checkpoints_path
from lab.audit.keys import public_key_fingerprint
from lab.audit.records import request_meta
from lab.gate import selectors as audit_selectors
from lab.gate.console_forms import RecordFilterForm
from lab.gate.console_views import CONSOLE, auditor_page, console_auditor
from lab.gate.review import auditor_read_record


@auditor_page
@require_GET
def export_view(request: HttpRequest) -> HttpResponse:
    key = public_key()
    return render(
        request,
        "audit/export.html",
        {"form": RecordFilterForm(), "fingerprint": public_key_fingerprint(key)},
    )


class _Echo:
    """csv.writer target that hands each formatted line back instead of buffering it."""

    def write(self, value: str) -> str:
        return value


@auditor_page
@require_POST
def export_csv_view(request: HttpRequest) -> HttpResponseBase:
    form = RecordFilterForm(request.POST)
    if not form.is_valid():
        return render(request, "audit/export.html", {"form": form, "fingerprint": ""}, status=400)
    filters = form.record_filter()
    record = auditor_read_record(
        user=console_auditor(request),
        meta=request_meta(request),
        context_type=CONSOLE,
        context_id="export.csv",
        query=filters.as_query()[:500],
        action="audit.export",
    )
    writer = csv.writer(_Echo())
    lines: Iterator[str] = (writer.writerow(row) for row in audit_selectors.records_csv_rows(filters=filters))
    response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="audit-records-{record.seq}.csv"'
    response["X-Audit-Seq"] = str(record.seq)
    return response


@auditor_page
@require_POST
def export_jsonl_view(request: HttpRequest) -> HttpResponseBase:
    """The whole chain with its signed checkpoints, zipped: unzip and run ``python -m lab.audit.verify``."""
    user = console_auditor(request)
    stamp = f"{timezone.now():%Y%m%dT%H%M%SZ}"
    bundle = tempfile.TemporaryFile(suffix=".zip")  # noqa: SIM115 - FileResponse closes it after sending
    with tempfile.TemporaryDirectory(prefix="audit-export-") as folder:
        records_path = Path(folder) / f"audit-{stamp}.jsonl"
        audit_export(
            path=records_path,
            actor_id=str(user.public_id),
            actor_role=primary_role(user),
            meta=request_meta(request),
        )
        with zipfile.ZipFile(bundle, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.write(records_path, records_path.name)
            archive.write(checkpoints_path(records_path), checkpoints_path(records_path).name)
            archive.writestr(
                "README.txt", render_to_string("audit/export_readme.txt", {"name": records_path.name})
            )
    bundle.seek(0)
    return FileResponse(
        bundle, as_attachment=True, filename=f"audit-{stamp}.zip", content_type="application/zip"
    )
