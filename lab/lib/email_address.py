"""The one form of an e-mail address the lab stores, compares and counts: the mailbox its mail goes to.

Django's SMTP backend sends every message to the address's domain IDNA-encoded (`sanitize_address` →
`django.utils.encoding.punycode`, Python's `idna` codec: nameprep, which is NFKC, case folding and dropping
characters such as the soft hyphen, then Punycode). So victim@ and "example.com" in fullwidth letters, with
soft hyphens in it (any number), or with U+212F SCRIPT SMALL E for its "e", are all mail to
victim@example.com; stored as typed, each was an account of its own and a guest address of its own (the guest
order throttle counted each apart). The domain here is what the mail goes to, in ASCII, lower-cased; the
local part is lower-cased, as the lab has always treated it (case-insensitively: one account per address
whatever its case).
"""

from __future__ import annotations

from django.utils.encoding import punycode


def email_canonical(address: str) -> str:
    """`address` (stripped) with its domain as Django's mail sends it (IDNA, lower-cased ASCII) and its local
    part lower-cased. ValueError (UnicodeError is one) for an address with no "@" or a domain IDNA cannot
    encode (a label over 63 characters once encoded, an empty label): no mail can be sent to it."""
    local, at, domain = address.strip().rpartition("@")
    if not at or not local or not domain:
        raise ValueError("not an e-mail address")
    return f"{local.lower()}@{punycode(domain).lower()}"
