from django.apps import AppConfig


class CustomerDataConfig(AppConfig):
    name = "lab.customer_data"
    label = "customer_data"
