from django.apps import AppConfig
from django.core import checks


class OrdersConfig(AppConfig):
    name = "lab.orders"
    label = "orders"

    def ready(self) -> None:
        from lab.orders.checks import jpegtran_installed

        checks.register(jpegtran_installed)
