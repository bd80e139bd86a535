"""COPPA's gate at its boundary: someone whose 13th birthday is tomorrow is refused, someone who turns 13
today is taken. The suite tried exactly 12 and 10 years only, so an age computed from the years alone passed
it (a mutation review)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from django.utils import timezone

from lab.accounts.models import User
from tests.builders import registration_body

pytestmark = pytest.mark.django_db


def _years_ago(today: date, years: int) -> date:
    try:
        return today.replace(year=today.year - years)
    except ValueError:  # 29 February
        return today.replace(year=today.year - years, day=28)


def _body(birth: date, email: str) -> dict[str, object]:
    return registration_body(email=email, birth_date=birth.isoformat())


def test_the_day_before_the_13th_birthday_is_refused_and_the_birthday_itself_is_taken(api):
    today = timezone.now().date()
    thirteen_today = _years_ago(today, 13)
    thirteen_tomorrow = thirteen_today + timedelta(days=1)

    refused = api.post("/api/v1/accounts", _body(thirteen_tomorrow, "kid@example.org"), format="json")
    taken = api.post("/api/v1/accounts", _body(thirteen_today, "teen@example.org"), format="json")

    assert (refused.status_code, refused.json().get("code")) == (403, "under_minimum_age")
    assert not User.objects.filter(email="kid@example.org").exists()
    assert taken.status_code == 201, taken.json()
