"""The lab's Celery talks to a Redis broker through lab/lib/broker.py (a failed ack frees its prefetch slot),
and only to one Redis URL: kombu took the scheme of a failover URL as the transport when it switched to it,
so after the first failover a worker ran kombu's own QoS again. Each case imports the app in a fresh
process."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.settings_import import settings_imported

READ_BACK = (
    "import json, lab.celery as c; print(json.dumps({'transport': c.app.conf.broker_transport, "
    "'ssl': c.app.conf.broker_use_ssl and {k: int(v) for k, v in c.app.conf.broker_use_ssl.items()}, "
    "'cls': c.app.connection_for_write().get_transport_cls().__module__}))"
)


def _imported(tmp_path: Path, url: str) -> dict[str, object]:
    done = settings_imported(tmp_path, READ_BACK, {"CELERY_BROKER_URL": url, "LAB_DEMO_SECRETS": "true"})
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_a_redis_broker_is_used_through_the_labs_transport(tmp_path):
    assert _imported(tmp_path, "redis://127.0.0.1:6379/3") == {
        "transport": "lab.lib.broker:Transport",
        "ssl": False,  # no TLS
        "cls": "lab.lib.broker",
    }


def test_a_tls_redis_broker_checks_the_servers_certificate(tmp_path):
    # kombu's own default for rediss:// is TLS without checking the certificate (ssl.CERT_NONE = 0)
    assert _imported(tmp_path, "rediss://127.0.0.1:6380/3")["ssl"] == {"ssl_cert_reqs": 2}  # CERT_REQUIRED


def test_several_redis_urls_are_refused_at_start_up(tmp_path):
    done = settings_imported(
        tmp_path,
        "import lab.celery",
        {"CELERY_BROKER_URL": "redis://10.0.0.1:6379/0;redis://10.0.0.2:6379/0", "LAB_DEMO_SECRETS": "true"},
    )

    assert done.returncode != 0
    assert "CELERY_BROKER_URL names several Redis servers" in done.stderr


TASK_LIMITS = (
    "import json, lab.settings as s; from workers.app import app; app.loader.import_default_modules(); "
    "print(json.dumps({'visibility': app.conf.broker_transport_options['visibility_timeout'], "
    "'limits': sorted(t.time_limit or 0 for n, t in app.tasks.items() if not n.startswith('celery.')), "
    "'longest': getattr(s, 'CELERY_TASK_TIME_LIMIT_LONGEST', None)}))"
)


def test_redis_hands_out_no_message_again_before_the_longest_task_could_end_whatever_the_default_limit(
    tmp_path,
):
    # A message a worker took and has not acknowledged (an acks_late task running to its limit, or one
    # prefetched behind the longest task) is handed out again after Redis's visibility timeout. Before, that
    # was 4x CELERY_TASK_TIME_LIMIT, a limit no task uses (each declares its own, up to 900 s): set to 120,
    # a second worker took the daily review sample (600 s, acks_late) while the first still ran it.
    for default_limit in ("300", "120"):
        done = settings_imported(
            tmp_path,
            TASK_LIMITS,
            {
                "CELERY_BROKER_URL": "redis://127.0.0.1:6379/3",
                "LAB_DEMO_SECRETS": "true",
                "CELERY_TASK_TIME_LIMIT": default_limit,
            },
        )
        assert done.returncode == 0, done.stderr
        read = json.loads(done.stdout.strip().splitlines()[-1])

        # then Redis waits longer than any task's limit, each task declaring its own (the longest is the
        # settings' CELERY_TASK_TIME_LIMIT_LONGEST, which the timeout is computed from)
        assert (read["visibility"], default_limit) > (read["limits"][-1], default_limit)
        assert 0 not in read["limits"]
        assert read["limits"][-1] == read["longest"] == 900
