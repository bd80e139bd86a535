"""The supervisors' alert for a payment Stripe took that no order holds, raised by every alerts check from the
events the webhook recorded as `unknown_payment_intent`: after a restore from a backup, an order placed
after the backup and paid after `manage.py stripe_replay` ran reaches the lab only that way."""

from __future__ import annotations

import pytest

from lab.production.alerts import alerts_check, payment_without_order_alert
from lab.production.models import Alert
from tests.support.stripe_webhooks import deliver

pytestmark = pytest.mark.django_db


def orderless(intent_id: str) -> dict[str, object]:
    return {
        "id": intent_id,
        "object": "payment_intent",
        "amount": 1250,
        "amount_received": 1250,
        "currency": "eur",
    }


def delivered(api, event_type: str, data: dict[str, object], event_id: str) -> None:
    response = deliver(api, event_type, data, event_id=event_id)
    assert response.status_code == 200, response.json()
    assert response.json()["outcome"] == "unknown_payment_intent"


def payment_alert_keys() -> list[str]:
    return sorted(Alert.objects.filter(kind="payment_without_order").values_list("key", flat=True))


def test_a_payment_no_order_holds_is_alerted_once_and_a_failed_or_refunded_one_never(api):
    # given Stripe's events, each for a PaymentIntent no order holds: one paid, one failed, one paid and
    # refunded, and the paid one's event delivered twice (Stripe retries)
    delivered(api, "payment_intent.succeeded", orderless("pi_paid"), "evt_paid")
    delivered(api, "payment_intent.succeeded", orderless("pi_paid"), "evt_paid_again")
    delivered(api, "payment_intent.payment_failed", orderless("pi_failed"), "evt_failed")
    delivered(api, "payment_intent.succeeded", orderless("pi_refunded"), "evt_refunded_paid")
    refunded = {"id": "ch_1", "object": "charge", "payment_intent": "pi_refunded", "refunded": True}
    delivered(api, "charge.refunded", refunded, "evt_refunded")

    # when the alerts are checked, twice
    alerts_check()
    alerts_check()

    # then the paid one is alerted, once, by its PaymentIntent (no amount: the recorded event keeps none)
    assert payment_alert_keys() == ["payment_without_order:pi_paid"]
    assert "PaymentIntent pi_paid" in Alert.objects.get().message


def test_a_payment_the_replay_alerted_already_is_not_alerted_again(api):
    # given the replay's alert for a payment without order, with its amount, and the payment's event recorded
    assert payment_without_order_alert(intent_id="pi_paid", left=1250, currency="eur")
    delivered(api, "payment_intent.succeeded", orderless("pi_paid"), "evt_paid")
    delivered(api, "payment_intent.succeeded", orderless("pi_other"), "evt_other")

    # when the alerts are checked
    alerts_check()

    # then the replay's alert stands (its amount kept), and only the other payment is alerted besides
    assert payment_alert_keys() == ["payment_without_order:pi_other", "payment_without_order:pi_paid"]
    assert "1250 eur" in Alert.objects.get(key="payment_without_order:pi_paid").message
