"""gunicorn settings for the Procfile's web process: its own logs as JSON lines, like the app's."""

import os
import tempfile

from bookingflow import settings
from bookingflow.bootstrap import fail

# The settings are checked here, in gunicorn's master as it reads this file, before it binds or forks:
# a worker that found them wrong exited, the master started another that failed the same way, and web
# restarted workers again and again instead of stopping with the one line naming the variable.
try:
    settings.require_service(settings.load())
except settings.SettingsError as exc:
    fail(str(exc))

# Several workers count requests: prometheus_client's multiprocess mode adds them up for /metrics.
# A fresh directory per start, so counts of an earlier run are not mistaken for this one's. Set when
# gunicorn reads this file, before its first log line: the log formatter reads the settings (which
# are then kept) on that line, and the workers inherit them.
os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="bookingflow-web-metrics-")

# gunicorn's control socket (gunicornc) is not used here, and its default path (~/.gunicorn) is one per
# user: a second web process on the same host, as an operator runs two intakes, fails to bind it.
control_socket_disable = True

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
