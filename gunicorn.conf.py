"""gunicorn settings every web process of the lab shares: `scripts/run`, `deploy/systemd/printlab-web.service`
and the tests' web server pass `--config gunicorn.conf.py` (each adds its own bind and worker count).

The access log names the path, never the query string or the Referer. Query strings carry what people type and
what links hold: a staff search for a customer's e-mail (`?q=`), a technician's justification at the photo
gate, a privacy receipt's bearer token (`?token=`); a Referer carries another page's query string. Paths hold
ids only. The line: client address (the proxy's, behind one), time, method, path, protocol, status, bytes,
duration in ms and the request id the lab answered with (the X-Request-ID the proxy set, or one the lab made
up; `-` when gunicorn refused the request itself), which the lab's own log lines carry as well
(`tests/observability/test_health_live.py`): never a client's own X-Request-ID, which the lab drops. The
client address is written as its network (a /24, a /48: `lab/lib/access_log.py`), as in the lab's own log
lines: an address is personal data, and logs outlive an erasure. What a client wrote is written with its
control characters escaped, and gunicorn's error log names a refused request by the peer's network and the
kind of error only (`tests/observability/test_log_injection_live.py`)."""

import os
from typing import Any

accesslog = "-"
logger_class = "lab.lib.access_log.AccessLogger"
access_log_format = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms %({x-request-id}o)s'
# A request line longer than this is refused by gunicorn itself, before Django, with its own 414 (README,
# Running in production); 8190 is gunicorn's largest bounded value.
limit_request_line = 8190
control_socket_disable = True
# A request still running after this is killed with its worker: longer than any one request should take,
# Stripe's calls included (STRIPE_TIMEOUT_SECONDS, three tries).
timeout = 60


def child_exit(server: Any, worker: Any) -> None:
    """A worker has exited (recycled by --max-requests, killed by the timeout, or stopped): with
    PROMETHEUS_MULTIPROC_DIR set (deploy/systemd/printlab-web.service), mark it dead in prometheus_client's
    multiprocess files, as its docs ask of gunicorn (its live gauges go), and fold its counter and histogram
    files into one archive file per type (lab/lib/metrics_archive.py): their values stay in the sum a scrape
    adds up, and the directory no longer gains two files per recycled worker, each read by every scrape. Read
    from the environment here: the master imports no Django (no preload); that module imports none either.
    A failed merge is logged, not raised: an exception here would stop the master."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        from lab.lib.metrics_archive import archive_dead_process

        try:
            archive_dead_process(worker.pid, directory)
        except Exception:
            server.log.exception("could not archive the metrics files of worker %s", worker.pid)
