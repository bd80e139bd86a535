from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "lab.audit"
    label = "audit"
