from django.apps import AppConfig


class NotifyConfig(AppConfig):
    name = "lab.notify"
    label = "notify"
