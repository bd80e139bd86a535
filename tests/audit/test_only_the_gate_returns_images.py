"""No view but the audit gate's returns customer image bytes to a person; no module but the gate and the
production pipeline decrypts photos."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from lab.production import services as production
from lab.production.models import PrintJob
from tests.factories import UserFactory
from tests.production.test_services import WORKER, hotfolder_printer, paid_order

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]
GATE_VIEWS = {"staff-photo", "asset-content"}  # staff via the gate; owners via the gate as owner access
IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"II*\x00", b"MM\x00*", b"RIFF")


def all_patterns(resolver: URLResolver | None = None, prefix: str = "") -> list[tuple[str, URLPattern]]:
    found: list[tuple[str, URLPattern]] = []
    for entry in (resolver or get_resolver()).url_patterns:
        if isinstance(entry, URLResolver):
            found += all_patterns(entry, prefix + str(entry.pattern))
        else:
            found.append((prefix + str(entry.pattern), entry))
    return found


def concrete(route: str, values: dict[str, str]) -> str:
    def fill(match: re.Match[str]) -> str:
        name = match.group(2)
        return values.get(name, values["default"])

    return "/" + re.sub(r"<(?:(\w+):)?(\w+)>", fill, route).lstrip("^").rstrip("$")


def test_only_gate_views_return_image_bytes(client, settings):
    hotfolder_printer("minilab", sizes=["4x6"])
    order = paid_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    production.order_release(order_id=order.pk)
    job = PrintJob.objects.get()
    production.print_job_rasterize(job_id=job.pk, worker=WORKER)
    values = {
        "asset_id": str(job.item.asset_id),
        "ref": order.ref,
        "job_id": str(job.pk),
        "pk": str(job.pk),
        "printer_id": str(job.printer_id),
        "order_id": str(order.pk),
        "variant": "preview",
        "endpoint_id": str(uuid.uuid4()),
        "delivery_id": str(uuid.uuid4()),
        "default": str(job.pk),
    }
    people = [UserFactory(roles=["technician", "packer", "supervisor", "auditor", "admin"]), order.customer]
    checked = []
    for route, pattern in all_patterns():
        if pattern.name in GATE_VIEWS:
            continue
        url = concrete(route, values)
        for person in people:
            client.force_login(person)
            response = client.get(url)
            body = b"".join(response.streaming_content) if response.streaming else response.content
            content_type = response.get("Content-Type", "")
            assert not content_type.startswith("image/"), (url, content_type)
            assert not body.startswith(IMAGE_MAGIC), url
        checked.append(url)
    assert len(checked) >= 15


def test_only_the_gate_and_the_production_pipeline_decrypt_photos():
    callers = sorted(
        str(path.relative_to(ROOT))
        for folder in ("lab", "api", "workers", "printers")
        for path in (ROOT / folder).rglob("*.py")
        if "vault_read(" in path.read_text() and path.name != "vault.py"
    )

    assert callers == ["lab/audit/gate.py", "lab/production/services.py"]
