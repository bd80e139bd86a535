from django.apps import AppConfig


class StaffConfig(AppConfig):
    name = "lab.staff"
    label = "staff"
    verbose_name = "Staff pages"
