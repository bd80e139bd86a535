from django.apps import AppConfig


class ProductionConfig(AppConfig):
    name = "lab.production"
    label = "production"
