from django.apps import AppConfig


class PackingConfig(AppConfig):
    name = "lab.packing"
    label = "packing"
