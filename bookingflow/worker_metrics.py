"""The worker's Prometheus exporter: Dramatiq's, bound where the settings say.

Dramatiq's own exporter binds `dramatiq_prom_host:dramatiq_prom_port` (0.0.0.0:9191 unless told),
and the Procfile used to hand it `$PORT`: on a host where web and worker see one PORT, whichever
came second crashed, and the metrics were open to the world. This one binds WORKER_METRICS_HOST
(loopback by default) on WORKER_METRICS_PORT.

Several worker processes on one host share the port and the metrics directory (the Procfile names
it after the port): the first to bind serves them all; the others keep trying quietly, so that one
takes over when the serving process stops. Dramatiq runs the exporter in a process forked from the
CLI's main process, which never imports `jobs`: this module stays light for that reason.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
import time
from http.server import HTTPServer

from dramatiq.middleware.prometheus import Prometheus, _metrics_handler

from bookingflow import settings as settings_module

log = logging.getLogger("bookingflow.worker_metrics")

# How often a worker whose port is taken by another worker of the host tries to take it over.
RETRY_BIND_SECONDS = 5.0


class WorkerPrometheus(Prometheus):
    """Dramatiq's Prometheus middleware, with the exporter below instead of Dramatiq's."""

    @property
    def forks(self):
        return [serve]


def serve() -> int:
    current = settings_module.get()  # the worker process validated them already, at start
    address = (current.worker_metrics_host, current.worker_metrics_port)
    server_class = _server_class(current.worker_metrics_host)
    told = False
    while True:
        try:
            server = server_class(address, _metrics_handler)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            if not told:
                log.info("worker metrics: %s:%s is served by another process of this host; taking over "
                         "if it stops", *address)
                told = True
            time.sleep(RETRY_BIND_SECONDS)
            continue
        log.info("worker metrics on http://%s:%s/", *address)
        try:
            server.serve_forever()
        finally:
            server.server_close()
        return 0


def _server_class(host: str) -> type[HTTPServer]:
    if ipaddress.ip_address(host).version == 4:
        return HTTPServer
    return type("HTTPServerV6", (HTTPServer,), {"address_family": socket.AF_INET6})
