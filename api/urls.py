"""Routes of the customer API, mounted at /api/v1/."""

from django.urls import path

from api import (
    account_views,
    asset_views,
    audit_views,
    notify_views,
    order_views,
    privacy_views,
    proof_views,
    views,
    webhooks,
)
from api.schema import DocsView, SchemaView, swagger_ui_file_view

urlpatterns = [
    path("schema/", SchemaView.as_view(), name="schema"),
    path("docs/", DocsView.as_view(), name="docs"),
    path("docs/swagger-ui/<str:path>", swagger_ui_file_view, name="docs-file"),
    path("products", views.ProductListView.as_view(), name="products"),
    path("accounts", account_views.AccountCreateView.as_view(), name="accounts"),
    path("auth/token", account_views.TokenCreateView.as_view(), name="auth-token"),
    path("me", privacy_views.AccountView.as_view(), name="me"),
    path("me/export", privacy_views.AccountExportView.as_view(), name="me-export"),
    path("me/email/confirm", account_views.MeEmailConfirmView.as_view(), name="me-email-confirm"),
    path("me/tokens", account_views.MeTokenListView.as_view(), name="me-tokens"),
    path("me/tokens/<uuid:token_id>", account_views.MeTokenDetailView.as_view(), name="me-token-detail"),
    path("me/receipts", privacy_views.MeReceiptListView.as_view(), name="me-receipts"),
    path("receipts/<uuid:receipt_id>", privacy_views.ReceiptView.as_view(), name="receipt-detail"),
    path("assets", asset_views.AssetCreateView.as_view(), name="assets"),
    path("assets/<str:asset_id>", asset_views.AssetDetailView.as_view(), name="asset-detail"),
    path("assets/<str:asset_id>/content", asset_views.AssetContentView.as_view(), name="asset-content"),
    path("quotes", order_views.QuoteView.as_view(), name="quotes"),
    path("proofs", proof_views.ProofCreateView.as_view(), name="proofs"),
    path("orders", order_views.OrderListCreateView.as_view(), name="orders"),
    path("orders/<str:ref>", order_views.OrderDetailView.as_view(), name="order-detail"),
    path("orders/<str:ref>/cancel", order_views.OrderCancelView.as_view(), name="order-cancel"),
    path("orders/<str:ref>/export", privacy_views.GuestOrderExportView.as_view(), name="order-export"),
    path(
        "orders/<str:ref>/personal-data",
        privacy_views.GuestOrderErasureView.as_view(),
        name="order-personal-data",
    ),
    path(
        "orders/<str:ref>/items/<int:position>/proof",
        proof_views.OrderItemProofView.as_view(),
        name="order-item-proof",
    ),
    path("webhooks/stripe", webhooks.StripeWebhookView.as_view(), name="stripe-webhook"),
    path("audit/records", audit_views.AuditRecordListView.as_view(), name="audit-records"),
    path("audit/summary", audit_views.AuditSummaryView.as_view(), name="audit-summary"),
    path("audit/anomalies", audit_views.AuditAnomalyListView.as_view(), name="audit-anomalies"),
    path("webhook-endpoints", notify_views.WebhookEndpointListCreateView.as_view(), name="webhook-endpoints"),
    path(
        "webhook-endpoints/<uuid:endpoint_id>",
        notify_views.WebhookEndpointDetailView.as_view(),
        name="webhook-endpoint-detail",
    ),
    path(
        "webhook-endpoints/<uuid:endpoint_id>/deliveries",
        notify_views.WebhookDeliveryListView.as_view(),
        name="webhook-endpoint-deliveries",
    ),
    path(
        "webhook-deliveries/<uuid:delivery_id>/redeliver",
        notify_views.WebhookRedeliverView.as_view(),
        name="webhook-delivery-redeliver",
    ),
]
