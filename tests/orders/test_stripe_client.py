"""The Stripe client is kept per process and configuration, so PaymentIntents reuse its open connection."""

from __future__ import annotations

from lab.orders import payment_client


def test_one_stripe_client_serves_every_call_with_the_same_configuration(settings):
    # given the lab's Stripe settings
    settings.STRIPE_API_BASE = "http://127.0.0.1:8420"

    # when the client is asked for twice, for another API base, then for the first one again
    first, again = payment_client.stripe_client(), payment_client.stripe_client()
    settings.STRIPE_API_BASE = "http://127.0.0.1:8421"
    elsewhere = payment_client.stripe_client()
    settings.STRIPE_API_BASE = "http://127.0.0.1:8420"
    back = payment_client.stripe_client()

    # then the same configuration gets the same client (and its connections), another one its own
    assert again is first
    assert back is first
    assert elsewhere is not first
