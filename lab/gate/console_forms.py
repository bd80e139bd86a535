"""The auditor console's forms: the time range and employee of the summary and anomaly pages, the records'
filters (the CSV export's too), and the day of a review queue build."""

from __future__ import annotations

import datetime
from datetime import timedelta
from typing import Any

from django import forms
from django.utils import timezone

from lab.audit.models import Outcome, Purpose
from lab.gate import selectors as audit_selectors
from lab.lib.calendar import OUT_OF_SPAN, day_in_span, moment_in_span

DATETIME_FORMATS = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"]


def _moment_field() -> forms.DateTimeField:
    """A time in the lab's time zone, typed in the browser's own date-time picker."""
    widget = forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")
    return forms.DateTimeField(required=False, input_formats=DATETIME_FORMATS, widget=widget)


def _employee_field() -> forms.CharField:
    widget = forms.TextInput(attrs={"placeholder": "work e-mail or public id"})
    return forms.CharField(required=False, max_length=254, widget=widget)


class RangeForm(forms.Form):
    since = _moment_field()
    until = _moment_field()
    employee = _employee_field()

    default_days = 1
    max_range = audit_selectors.MAX_ANOMALY_RANGE

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not all(moment_in_span(data[name]) for name in ("since", "until") if data.get(name)):
            raise forms.ValidationError(OUT_OF_SPAN)
        until = data.get("until") or timezone.now()
        since = data.get("since") or until - timedelta(days=self.default_days)
        if since >= until:
            raise forms.ValidationError("The start must be before the end.")
        if until - since > self.max_range:
            raise forms.ValidationError(f"At most {self.max_range.days} days at a time.")
        data["since"], data["until"] = since, until
        employee = (data.get("employee") or "").strip()
        data["actor_id"] = audit_selectors.actor_id_for(employee=employee) if employee else None
        return data


class SummaryForm(RangeForm):
    default_days = 7
    max_range = audit_selectors.MAX_SUMMARY_RANGE


class RecordFilterForm(forms.Form):
    employee = _employee_field()
    order_ref = forms.CharField(required=False, max_length=32)
    asset_id = forms.CharField(required=False, max_length=64)
    purpose = forms.ChoiceField(required=False, choices=[("", "any"), *Purpose.choices])
    outcome = forms.ChoiceField(required=False, choices=[("", "any"), *Outcome.choices])
    action = forms.CharField(required=False, max_length=64)
    since = _moment_field()
    until = _moment_field()
    before = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)
    after = forms.IntegerField(required=False, min_value=0, widget=forms.HiddenInput)

    def record_filter(self) -> audit_selectors.RecordFilter:
        data = self.cleaned_data
        employee = (data.get("employee") or "").strip()

        def text(name: str) -> str | None:
            return (data.get(name) or "").strip() or None

        return audit_selectors.RecordFilter(
            actor_id=audit_selectors.actor_id_for(employee=employee) if employee else None,
            order_ref=text("order_ref"),
            asset_id=text("asset_id"),
            purpose=text("purpose"),
            outcome=text("outcome"),
            action=text("action"),
            since=data.get("since"),
            until=data.get("until"),
        )


class DayForm(forms.Form):
    day = forms.DateField()

    def clean_day(self) -> datetime.date:
        day: datetime.date = self.cleaned_data["day"]
        if not day_in_span(day):
            raise forms.ValidationError(OUT_OF_SPAN)
        return day
