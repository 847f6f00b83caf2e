"""`bookingflow console`: the console under gunicorn, on 0.0.0.0:CONSOLE_PORT.

A few operators, not the public: two synchronous workers with a few threads each are plenty, and keep
a slow page from holding up the others. Put it behind TLS (its cookie is Secure); see OPERATIONS.md.
"""

from __future__ import annotations

from gunicorn.app.base import BaseApplication

from bookingflow.settings import Settings

WORKERS = 2
THREADS = 4


class ConsoleServer(BaseApplication):
    def __init__(self, settings: Settings):
        self.settings_for_app = settings
        super().__init__()

    def load_config(self):
        for key, value in {"bind": f"0.0.0.0:{self.settings_for_app.console_port}", "workers": WORKERS,
                           "worker_class": "gthread", "threads": THREADS, "timeout": 30, "graceful_timeout": 20,
                           "accesslog": None, "proc_name": "bookingflow-console"}.items():
            self.cfg.set(key, value)

    def load(self):
        from console import create_app

        return create_app(self.settings_for_app)


def serve(settings: Settings) -> int:
    ConsoleServer(settings).run()
    return 0
