"""Routes of the auditor console, mounted at /lab/audit/ by lab/urls.py (before the /lab/ staff pages).

Namespace `audit_console`; every page is for auditors and admins only and returns metadata, never photos.
"""

from __future__ import annotations

from django.urls import path

from lab.gate import console_export_views, console_review_views, console_views

app_name = "audit_console"

urlpatterns = [
    path("", console_views.records_view, name="records"),
    path("records/<int:seq>/", console_views.record_view, name="record"),
    path("summary/", console_views.summary_view, name="summary"),
    path("anomalies/", console_views.anomalies_view, name="anomalies"),
    path("review/", console_review_views.review_view, name="review"),
    path("review/build/", console_review_views.review_build_view, name="review_build"),
    path("review/<int:item_id>/sign-off/", console_review_views.review_sign_off_view, name="review_sign_off"),
    path("export/", console_export_views.export_view, name="export"),
    path("export/records.csv", console_export_views.export_csv_view, name="export_csv"),
    path("export/chain.zip", console_export_views.export_jsonl_view, name="export_jsonl"),
    path("console.css", console_views.stylesheet_view, name="stylesheet"),
]
