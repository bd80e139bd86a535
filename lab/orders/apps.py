from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "lab.orders"
    label = "orders"
