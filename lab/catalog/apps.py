from django.apps import AppConfig
from django.core import checks


class CatalogConfig(AppConfig):
    name = "lab.catalog"
    label = "catalog"

    def ready(self) -> None:
        from lab.catalog.checks import products_in_the_lab_s_currency

        checks.register(products_in_the_lab_s_currency, checks.Tags.database)
