"""GET me/export lists every employee view of the customer's photos, a download of the full file included
(README: photo_views, preview, full view or download). A mutation review found no test that failed when
downloads were left out."""

from __future__ import annotations

import pytest

from lab.customer_data.export import account_export
from tests.builders import UserFactory, asset_for, attempt, minutes, person

pytestmark = pytest.mark.django_db


def test_an_employee_download_of_a_customers_photo_is_in_their_export(api):
    customer = UserFactory.create()
    photo = asset_for(customer)
    technician = person("technician")
    for n, action in enumerate(("image.view.preview", "image.view.full", "image.download"), start=1):
        attempt(technician, at=minutes(n), action=action, asset_id=str(photo.pk))

    api.force_authenticate(customer)
    response = api.get("/api/v1/me/export")

    assert response.status_code == 200
    assert [v["action"] for v in response.json()["photo_views"]] == [
        "image.view.preview",
        "image.view.full",
        "image.download",
    ]
    assert [v["action"] for v in account_export(user=customer)["photo_views"]][-1] == "image.download"
