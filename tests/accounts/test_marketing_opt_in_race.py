"""My Account's marketing choice is compared with the account as it is under its row's lock, not as the
request read it: a withdrawal sent after an opt-in committed (two tabs, two requests) is stored and recorded,
never answered as saved while the opt-in stays."""

from __future__ import annotations

import pytest

from lab.accounts import services
from lab.accounts.models import Consent, User
from tests.builders import UserFactory

pytestmark = pytest.mark.django_db


def test_a_withdrawal_read_before_an_opt_in_committed_is_stored_and_recorded():
    # given two requests that both read the account (not opted in) before either changed it
    customer = UserFactory.create(marketing_opt_in=False)
    opting_in, withdrawing = User.objects.get(pk=customer.pk), User.objects.get(pk=customer.pk)

    services.customer_update(user=opting_in, marketing_opt_in=True)
    services.customer_update(user=withdrawing, marketing_opt_in=False)

    # then the last one is what holds, and both are on the record: before, the withdrawal was compared with
    # the value its request had read (false), found no change, and the opt-in stayed, unrecorded as withdrawn
    customer.refresh_from_db()
    assert customer.marketing_opt_in is False
    consents = Consent.objects.filter(user=customer, kind=Consent.Kind.MARKETING).order_by("pk")
    assert list(consents.values_list("granted", flat=True)) == [True, False]
