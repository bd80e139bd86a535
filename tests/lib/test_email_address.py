"""email_canonical: an address in the form its mail is delivered to (Django's sanitize_address), so that every
spelling of one mailbox is one account and one guest address."""

from __future__ import annotations

from email.utils import parseaddr

import pytest
from django.core.mail.message import sanitize_address

from lab.lib.email_address import email_canonical


@pytest.mark.parametrize(
    "spelling",
    [
        pytest.param("victim@example.com", id="as-is"),
        pytest.param("  Victim@EXAMPLE.Com ", id="case-and-spaces"),
        pytest.param("victim@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com", id="fullwidth-letters"),
        pytest.param("victim@example\uff0ecom", id="fullwidth-full-stop"),
        pytest.param("victim@exam\u00adple.com", id="soft-hyphen"),
        pytest.param("victim@e\u00adx\u00ad\u00ada\u00admple.com", id="many-soft-hyphens"),
        pytest.param("victim@\u212fxample.com", id="script-small-e"),
        pytest.param("victim@exa\u200bmple.com", id="zero-width-space"),
    ],
)
def test_every_spelling_of_one_mailbox_is_one_address(spelling):
    assert email_canonical(spelling) == "victim@example.com"


@pytest.mark.parametrize(
    "spelling",
    [
        "victim@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com",
        "victim@exam\u00adple.com",
        "victim@\u212fxample.com",
        "zoe@bücher.example",
        "zoe@Straße.de",
    ],
)
def test_the_domain_is_the_one_the_mail_goes_to(spelling):
    # what Django's SMTP backend writes into the envelope and the To: header
    sent = parseaddr(sanitize_address(spelling, "utf-8"))[1]

    assert email_canonical(spelling) == sent.lower()


def test_an_internationalised_domain_is_stored_in_ascii():
    assert email_canonical("Zoë@Bücher.example") == "zoë@xn--bcher-kva.example"
    assert email_canonical("zoe@xn--bcher-kva.example") == "zoe@xn--bcher-kva.example"
    assert email_canonical("zoe@straße.de") == "zoe@strasse.de"  # IDNA 2003, as Python's codec sends it


@pytest.mark.parametrize(
    "address",
    [
        "victim@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com",
        "Zoë@Bücher.example",
        "a+b@Exa\u00admple.org",
        '"a@b"@example.org',
    ],
)
def test_it_is_idempotent(address):
    once = email_canonical(address)

    assert email_canonical(once) == once


def test_only_the_last_at_sign_starts_the_domain():
    assert email_canonical('"A@B"@Example.org') == '"a@b"@example.org'


@pytest.mark.parametrize(
    "address",
    [
        pytest.param("no-at-sign", id="no-at"),
        pytest.param("@example.org", id="no-local-part"),
        pytest.param("victim@", id="no-domain"),
        pytest.param("x@" + 60 * "ä" + ".com", id="label-too-long-once-encoded"),
        pytest.param("x@exa..mple.com", id="empty-label"),
    ],
)
def test_an_address_no_mail_can_be_sent_to_is_a_value_error(address):
    with pytest.raises(ValueError):
        email_canonical(address)
