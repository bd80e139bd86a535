from django.apps import AppConfig


class PrivacyConfig(AppConfig):
    name = "lab.privacy"
    label = "privacy"
