"""Routes of the auditor console, mounted at /lab/audit/ by lab/urls.py (before the /lab/ staff pages).

Namespace `audit_console`; every page is for auditors and admins only and returns metadata, never photos.
"""

from __future__ import annotations

from django.urls import path

from lab.gate import console_views as views

app_name = "audit_console"

urlpatterns = [
    path("", views.records_view, name="records"),
    path("records/<int:seq>/", views.record_view, name="record"),
    path("summary/", views.summary_view, name="summary"),
    path("anomalies/", views.anomalies_view, name="anomalies"),
    path("review/", views.review_view, name="review"),
    path("review/build/", views.review_build_view, name="review_build"),
    path("review/<int:item_id>/sign-off/", views.review_sign_off_view, name="review_sign_off"),
    path("export/", views.export_view, name="export"),
    path("export/records.csv", views.export_csv_view, name="export_csv"),
    path("export/chain.zip", views.export_jsonl_view, name="export_jsonl"),
    path("console.css", views.stylesheet_view, name="stylesheet"),
]
