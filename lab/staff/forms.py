"""Input forms of the staff pages: they check shapes only; the services decide what is allowed."""

from __future__ import annotations

from django import forms

from lab.packing.checklist import TOKEN_LENGTH
from lab.packing.station import Carrier
from lab.production.holds import HOLD_MESSAGE_MAX
from lab.production.states import ReprintReason


class LoginForm(forms.Form):
    email = forms.EmailField(max_length=254)
    password = forms.CharField(max_length=200, strip=False, widget=forms.PasswordInput)


class RerouteForm(forms.Form):
    printer = forms.IntegerField(required=False, min_value=1)


class ReprintForm(forms.Form):
    reason = forms.ChoiceField(choices=ReprintReason.choices)
    copies = forms.IntegerField(min_value=1, max_value=1000)
    note = forms.CharField(max_length=200, required=False)
    request_key = forms.RegexField(regex=r"^[0-9a-f]{32}$", required=False)  # the form's one-time key
    # The newest reprint of the job when the page was opened (0: none): one made since refuses this one.
    last_reprint_seen = forms.IntegerField(required=False, min_value=0)


class ResolveForm(forms.Form):
    outcome = forms.ChoiceField(choices=[("printed", "Printed"), ("not_printed", "Not printed")])
    # The send the person judged (the job's title token when the page was opened): one sent since refuses.
    title_token = forms.CharField(required=False, max_length=8)


class CopiesForm(forms.Form):
    copies = forms.IntegerField(min_value=0, max_value=1000)


class HoldForm(forms.Form):
    message = forms.CharField(max_length=HOLD_MESSAGE_MAX, widget=forms.Textarea)


class ReleaseHoldForm(forms.Form):
    # The hold the page showed (its move to on hold, holds.hold_event_id): one placed since refuses this one.
    hold_seen = forms.IntegerField(required=False, min_value=0)


class ScanForm(forms.Form):
    code = forms.CharField(max_length=60)


def _page_token_field() -> forms.CharField:
    # The page's token (`seen`), which the station requires: a post without it is refused as the station
    # refuses it (page_token_required, with a message that says what to do; the views check it first), and
    # one the page did not give (stale, forged) as made from a page the box changed under (job_changed).
    # Every token the page gives is TOKEN_LENGTH hex digits.
    return forms.CharField(required=True, max_length=TOKEN_LENGTH)


class ConfirmItemForm(forms.Form):
    position = forms.IntegerField(min_value=1, max_value=10000)
    copies = forms.IntegerField(min_value=0, max_value=10000)
    # The checklist line's `seen` on the page the count was made from: the count is refused if the item
    # changed since (a reprint, a quality check, a count from another page, an unpack).
    seen = _page_token_field()


class PackForm(forms.Form):
    # order_seen of the page's checklist: a pack, an unpack or a handover from a page the order changed under
    # is refused.
    seen = _page_token_field()


class ShipForm(forms.Form):
    carrier = forms.ChoiceField(choices=Carrier.choices)
    tracking_number = forms.CharField(max_length=64)
    # order_seen of the page's checklist: a page opened before the box was unpacked and packed again (other
    # counts, a reprint) ships nothing.
    seen = _page_token_field()


def form_problem(form: forms.Form) -> str:
    """One line naming what is wrong with the input, for a flash message."""
    parts = [
        f"{field}: {' '.join(str(error) for error in errors)}"
        if field != "__all__"
        else " ".join(str(error) for error in errors)
        for field, errors in form.errors.items()
    ]
    return "Please check the form. " + "; ".join(parts)
