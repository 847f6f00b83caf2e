"""gunicorn settings for the Procfile's web process: gevent workers, and its own logs as JSON lines,
like the app's."""

# gevent's workers, so that a slow client costs a greenlet waiting on its socket, not one of a few
# threads: 100 connections trickling their headers used to leave /healthz and the webhooks unanswered
# with 2 workers x 4 threads. Everything is patched first, before this file imports anything (and so
# in the master too, before gunicorn forks): a module imported unpatched keeps real thread locals and
# locks, and peewee's connection state, made per thread, would then be shared by every request of a
# worker. psycopg2 is not Python sockets: psycogreen makes it wait on gevent's hub.
from gevent import monkey

monkey.patch_all()

from psycogreen.gevent import patch_psycopg  # noqa: E402

patch_psycopg()

import os  # noqa: E402
import tempfile  # noqa: E402

worker_class = "gevent"
# Connections each worker holds at once, slow ones included; beyond it the kernel's backlog queues them.
worker_connections = 1000

from gunicorn.glogging import Logger  # noqa: E402

from bookingflow import settings  # noqa: E402

# The settings are checked here, in gunicorn's master as it reads this file, before it binds or forks:
# a worker that found them wrong exited, the master started another that failed the same way, and web
# restarted workers again and again instead of stopping with the one line naming the variable.
try:
    settings.require_service(settings.load())
except settings.SettingsError as exc:
    settings.stop(str(exc))

# Several workers count requests: prometheus_client's multiprocess mode adds them up for /metrics.
# A fresh directory per start, so counts of an earlier run are not mistaken for this one's. Set when
# gunicorn reads this file, before its first log line: the log formatter reads the settings (which
# are then kept) on that line, and the workers inherit them.
os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="bookingflow-web-metrics-")

# gunicorn's control socket (gunicornc) is not used here, and its default path (~/.gunicorn) is one per
# user: a second web process on the same host, as an operator runs two intakes, fails to bind it.
control_socket_disable = True


class AppWritesTheAccessLines(Logger):
    """gunicorn's logger, without its access line. The app writes its own (`intake.access`, for what is
    not a GET), so gunicorn's went to a logger with no handler: it still built the line's dozen fields
    for every request, 7 % of a status poll's CPU. Disabled here, gunicorn builds nothing."""

    def _compute_access_log_enabled(self):
        return False


logger_class = AppWritesTheAccessLines

logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "bookingflow.logs.JsonFormatter"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
    "root": {"level": "INFO", "handlers": ["stderr"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": [], "propagate": False},
    },
}


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker):
    # What the app asks to start in each worker once it is forked (create_app lists it): greenlets that
    # must live in the worker, not in the master. The floor does not import the web's code.
    for start in getattr(worker.wsgi, "extensions", {}).get("after_worker_fork", ()):  # any WSGI app may be served
        start()
