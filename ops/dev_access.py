"""`bookingflow dev`'s request log: one plain line per request (method, path, status, time), with
booking ids and other opaque ids replaced, no query string (the Calendly link carries the client's name
and e-mail there) and no terminal colour codes, whether it goes to a terminal or a file."""

from __future__ import annotations

import logging
import re
import time

from werkzeug.serving import WSGIRequestHandler

log = logging.getLogger("dev.access")

# A segment after "bookings" is a booking id; elsewhere, a long opaque token with a digit in it (a
# Checkout Session, a Calendly UUID) is someone's id too. Words like "webhook_subscriptions" are not.
AFTER_BOOKINGS = re.compile(r"(?<=/bookings/)[^/]+")
OPAQUE = re.compile(r"(?<=/)(?=[^/]*\d)[A-Za-z0-9_-]{16,}(?=/|$)")
# Loggers whose every-request or every-sweep lines the access line already tells, or that say nothing a
# newcomer needs: quiet below WARNING in `dev`.
CHATTY = ("intake.access", "stripe", "apscheduler")


def masked_path(path: str) -> str:
    return OPAQUE.sub("<id>", AFTER_BOOKINGS.sub("<id>", path))


class AccessLog:
    """WSGI middleware writing the access line once the response has started."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        started = time.perf_counter()
        status = []

        def start(status_line, headers, exc_info=None):
            status.append(status_line.split(" ", 1)[0])
            return start_response(status_line, headers, exc_info)

        try:
            return self.app(environ, start)
        finally:
            path = masked_path(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""))
            log.info("%s %s %s %.0fms", environ.get("REQUEST_METHOD"), path, status[0] if status else "-",
                     (time.perf_counter() - started) * 1000)


class QuietRequestHandler(WSGIRequestHandler):
    """Werkzeug's handler without its own, coloured, access line (AccessLog writes ours)."""

    def log_request(self, code="-", size="-"):
        pass


def quiet_chatty_loggers() -> None:
    for name in CHATTY:
        logging.getLogger(name).setLevel(logging.WARNING)
