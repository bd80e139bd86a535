from django.apps import AppConfig


class NotifyConfig(AppConfig):
    name = "lab.notify"
    label = "notify"

    def ready(self) -> None:
        from lab.notify.webhooks import item_reprinted_emit
        from lab.production.signals import reprint_made

        # In the reprint's own transaction: the webhook event is written with the reprint or not at all.
        reprint_made.connect(item_reprinted_emit, dispatch_uid="notify.item_reprinted")
