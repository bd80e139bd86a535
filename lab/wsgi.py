"""WSGI entry point (gunicorn lab.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lab.settings")
application = get_wsgi_application()

# isort: split
# After Django is set up: the Celery app reads its settings.
from lab.celery import sends_give_up_on_a_stalled_broker  # noqa: E402

sends_give_up_on_a_stalled_broker()
