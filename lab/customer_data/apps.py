from django.apps import AppConfig


class CustomerDataConfig(AppConfig):
    name = "lab.customer_data"
    label = "customer_data"

    def ready(self) -> None:
        # Connects the purge of a refused under-13 guest's photos (lab.orders.intake.guest_refused_under_age)
        # in every process, a shell or a command included, not only once a URLconf has imported photo_purge.
        from lab.customer_data import photo_purge  # noqa: F401
