"""WSGI entry point (gunicorn lab.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lab.settings")
application = get_wsgi_application()
# A Content-Type Django cannot parse reaches the middleware, not a raise before it (lab/lib/requests.py).
from lab.lib.requests import LabRequest  # noqa: E402

application.request_class = LabRequest

# isort: split
# After Django is set up: the Celery app reads its settings.
from lab.celery import sends_give_up_on_a_stalled_broker  # noqa: E402

sends_give_up_on_a_stalled_broker()
