"""Auditor API over the audit log: filtered records (keyset pages by seq), per-employee summaries, anomalies.
Auditors and admins only (token or session); metadata only; every answer is `Cache-Control: no-store`.

Each successful call first appends an ``audit.read`` record (context ``audit_api``); if that write fails
the call answers 503 ``audit_unavailable`` and shows nothing. A call the browser says another site started
(Sec-Fetch-Site) is refused first, 403 ``request_from_another_site``, unrecorded: a link in a chat opened the
API in the auditor's session and wrote a read in their name with the link writer's filters.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast

from django.utils import timezone
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from lab.accounts.models import SecurityEvent, User
from lab.accounts.roles import AUDITOR_ROLES, has_role
from lab.audit.canonical import RECORD_FIELDS
from lab.audit.models import AuditRecord, Outcome, Purpose
from lab.audit.records import request_meta
from lab.audit.staff_seal import REFUSAL_MESSAGE, staff_seal_check
from lab.gate import selectors
from lab.gate.anomalies import anomalies_find
from lab.gate.errors import GateError
from lab.gate.review import auditor_read_record
from lab.gate.views import FOREIGN_FETCH_SITES
from lab.lib.calendar import OUT_OF_SPAN, moment_in_span
from lab.lib.errors import PermissionDenied

API_CONTEXT = "audit_api"


class IsAuditor(BasePermission):
    message = "Only auditors and admins read the audit log."

    def has_permission(self, request: Request, view: APIView) -> bool:
        if not has_role(request.user, *AUDITOR_ROLES):
            return False
        # An auditor account changed outside the lab's tools (lab/accounts/seal.py) is refused on the record.
        meta = request_meta(request._request)
        if not staff_seal_check(request.user, meta=meta, channel=SecurityEvent.Channel.API):  # type: ignore[arg-type]
            self.message = REFUSAL_MESSAGE
            return False
        return True


class AuditorAPIView(APIView):
    permission_classes = (IsAuthenticated, IsAuditor)
    pagination_class = None

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        # Before authentication and the permissions (whose staff-seal check may write): nothing is recorded.
        if request._request.headers.get("Sec-Fetch-Site", "") in FOREIGN_FETCH_SITES:
            raise PermissionDenied(
                GateError.REQUEST_FROM_ANOTHER_SITE,
                "This request was started by another site; call the audit API from the lab's own pages or a "
                "client of your own.",
            )
        super().initial(request, *args, **kwargs)

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)
        response["Cache-Control"] = "no-store"
        return response

    def record_read(self, request: Request, *, page: str, query: str) -> None:
        auditor_read_record(
            user=cast(User, request.user),
            meta=request_meta(request._request),
            context_type=API_CONTEXT,
            context_id=page,
            query=query[:500],
        )


class RangeQuery(serializers.Serializer[None]):
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
    employee = serializers.CharField(required=False, max_length=254, help_text="work e-mail or public id")

    default_range = timedelta(days=1)
    max_range = selectors.MAX_ANOMALY_RANGE

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not all(moment_in_span(attrs[name]) for name in ("since", "until") if attrs.get(name)):
            raise serializers.ValidationError({"since": OUT_OF_SPAN})
        until = attrs.get("until") or timezone.now()
        since = attrs.get("since") or until - self.default_range
        if since >= until:
            raise serializers.ValidationError({"since": "must be before until"})
        if until - since > self.max_range:
            raise serializers.ValidationError({"since": f"at most {self.max_range.days} days at a time"})
        employee = (attrs.get("employee") or "").strip()
        return {
            "since": since,
            "until": until,
            "actor_id": selectors.actor_id_for(employee=employee) if employee else None,
        }


class SummaryQuery(RangeQuery):
    default_range = timedelta(days=7)
    max_range = selectors.MAX_SUMMARY_RANGE


class RecordQuery(serializers.Serializer[None]):
    employee = serializers.CharField(required=False, max_length=254, help_text="work e-mail or public id")
    order_ref = serializers.CharField(required=False, max_length=32)
    asset_id = serializers.CharField(required=False, max_length=64)
    purpose = serializers.ChoiceField(required=False, choices=Purpose.choices)
    outcome = serializers.ChoiceField(required=False, choices=Outcome.choices)
    action = serializers.CharField(required=False, max_length=64)
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
    before = serializers.IntegerField(required=False, min_value=1, help_text="records with a lower seq")
    after = serializers.IntegerField(required=False, min_value=0, help_text="records with a higher seq")
    limit = serializers.IntegerField(required=False, min_value=1, max_value=selectors.MAX_PAGE, default=50)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "before" in attrs and "after" in attrs:
            raise serializers.ValidationError({"after": "give either before or after"})
        return attrs

    def record_filter(self) -> selectors.RecordFilter:
        data = self.validated_data
        employee = (data.get("employee") or "").strip()
        return selectors.RecordFilter(
            actor_id=selectors.actor_id_for(employee=employee) if employee else None,
            order_ref=data.get("order_ref") or None,
            asset_id=data.get("asset_id") or None,
            purpose=data.get("purpose") or None,
            outcome=data.get("outcome") or None,
            action=data.get("action") or None,
            since=data.get("since"),
            until=data.get("until"),
        )


class AuditRecordOutput(serializers.ModelSerializer[AuditRecord]):
    employee_email = serializers.SerializerMethodField()

    class Meta:
        model = AuditRecord
        # The chain's own field list, with the employee's e-mail (staff only) after the actor id.
        fields = (*RECORD_FIELDS[:3], "employee_email", *RECORD_FIELDS[3:], "hash")

    def get_employee_email(self, record: AuditRecord) -> str | None:
        return cast(dict[str, str], self.context.get("emails", {})).get(record.actor_id or "")


class AnomalyOutput(serializers.Serializer[dict[str, object]]):
    seq = serializers.IntegerField()
    flag = serializers.CharField()
    actor_id = serializers.CharField()
    employee_email = serializers.CharField(allow_null=True)
    occurred_at = serializers.DateTimeField()
    order_ref = serializers.CharField(allow_null=True)
    detail = serializers.CharField()


def _page_url(request: Request, **cursor: int) -> str:
    params = request.query_params.copy()
    for name in ("before", "after"):
        params.pop(name, None)
    for name, value in cursor.items():
        params[name] = str(value)
    return request.build_absolute_uri(f"{request.path}?{params.urlencode()}")


class AuditRecordListView(AuditorAPIView):
    """Audit records newest first, filtered; `next` / `previous` are keyset links (no total count)."""

    @extend_schema(
        parameters=[RecordQuery],
        responses=inline_serializer(
            "AuditRecordPage",
            {
                "next": serializers.URLField(allow_null=True),
                "previous": serializers.URLField(allow_null=True),
                "results": AuditRecordOutput(many=True),
            },
        ),
    )
    def get(self, request: Request) -> Response:
        query = RecordQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        filters = query.record_filter()
        before, after = query.validated_data.get("before"), query.validated_data.get("after")
        cursor = f"&before={before}" if before else f"&after={after}" if after is not None else ""
        self.record_read(request, page="records", query=filters.as_query() + cursor)
        page = selectors.records_page(
            filters=filters, before=before, after=after, limit=query.validated_data["limit"]
        )
        emails = selectors.employee_emails(actor_ids=[record.actor_id for record in page.records])
        return Response(
            {
                "next": _page_url(request, before=page.older) if page.older else None,
                "previous": _page_url(request, after=page.newer) if page.newer else None,
                "results": AuditRecordOutput(page.records, many=True, context={"emails": emails}).data,
            }
        )


class AuditSummaryView(AuditorAPIView):
    """Per employee: views, full-resolution views, refusals, distinct orders and photos, purposes, flags."""

    @extend_schema(
        parameters=[SummaryQuery],
        responses=inline_serializer(
            "AuditSummary",
            {
                "since": serializers.DateTimeField(),
                "until": serializers.DateTimeField(),
                "employees": serializers.ListField(child=serializers.DictField()),
            },
        ),
    )
    def get(self, request: Request) -> Response:
        query = SummaryQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        since, until, actor_id = _range(query.validated_data)
        self.record_read(request, page="summary", query=_range_query(since, until, actor_id))
        summaries = selectors.employee_summaries(since=since, until=until, actor_id=actor_id)
        return Response(
            {
                "since": since.isoformat(),
                "until": until.isoformat(),
                "employees": [summary.as_dict() for summary in summaries],
            }
        )


class AuditAnomalyListView(AuditorAPIView):
    """Every anomaly flag in a range (at most 31 days; default the last 24 hours), oldest record first."""

    @extend_schema(
        parameters=[RangeQuery],
        responses=inline_serializer(
            "AuditAnomalies",
            {
                "since": serializers.DateTimeField(),
                "until": serializers.DateTimeField(),
                "results": AnomalyOutput(many=True),
            },
        ),
    )
    def get(self, request: Request) -> Response:
        query = RangeQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        since, until, actor_id = _range(query.validated_data)
        self.record_read(request, page="anomalies", query=_range_query(since, until, actor_id))
        found = anomalies_find(since=since, until=until, actor_id=actor_id)
        emails = selectors.employee_emails(actor_ids=[anomaly.actor_id for anomaly in found])
        rows = [
            {
                "seq": anomaly.seq,
                "flag": anomaly.flag.value,
                "actor_id": anomaly.actor_id,
                "employee_email": emails.get(anomaly.actor_id),
                "occurred_at": anomaly.occurred_at,
                "order_ref": anomaly.order_ref,
                "detail": anomaly.detail,
            }
            for anomaly in found
        ]
        return Response(
            {
                "since": since.isoformat(),
                "until": until.isoformat(),
                # The stubs type the instance of one serializer only; many=True takes many of them.
                "results": AnomalyOutput(rows, many=True).data,  # type: ignore[arg-type]
            }
        )


def _range(data: dict[str, Any]) -> tuple[datetime, datetime, str | None]:
    return data["since"], data["until"], data["actor_id"]


def _range_query(since: datetime, until: datetime, actor_id: str | None) -> str:
    query = f"since={since.isoformat()}&until={until.isoformat()}"
    return query + (f"&actor_id={actor_id}" if actor_id else "")
