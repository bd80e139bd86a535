from django.apps import AppConfig


class GateConfig(AppConfig):
    name = "lab.gate"
    label = "gate"
