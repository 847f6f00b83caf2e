"""The sandbox kept in a JSON file, so that `bookingflow dev` restarted on the same database still finds
the Checkout Sessions, payments and Calendly events its bookings refer to.

The file holds what the fakes created (objects, their terms, deliveries not yet accepted), never a
secret: the keys are fresh at each start, and the set-up (event types, webhook endpoint and
subscription) is made again then, as an operator's dashboards would still have it.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from flask import Response, request

FORMAT = 1
READ_ONLY_METHODS = ("GET", "HEAD", "OPTIONS")


class SavedSandbox:
    """The state of `sandbox` in the file at `path`: loaded once, saved after every request that may
    change it and when the sandbox closes."""

    def __init__(self, sandbox: Any, path: Path):  # a sandbox.Sandbox (not imported: it imports this module)
        self.sandbox, self.path = sandbox, Path(path)
        self._lock = threading.Lock()

    def load(self) -> bool:
        """Restore the file's state into the sandbox; False when there is no file yet."""
        if not self.path.exists():
            return False
        state = json.loads(self.path.read_text(encoding="utf-8"))
        if state.get("format") != FORMAT:
            raise ValueError(f"{self.path} was written by another version of the sandbox (format "
                             f"{state.get('format')!r}); delete it to start the sandbox afresh")
        self.sandbox.stripe.import_state(state.get("stripe", {}))
        self.sandbox.calendly.import_state(state.get("calendly", {}))
        self.sandbox.resend_deliveries(state.get("deliveries", []))
        return True

    def save(self) -> None:
        state = {"format": FORMAT, "stripe": self.sandbox.stripe.export_state(),
                 "calendly": self.sandbox.calendly.export_state(), "deliveries": self.sandbox.unfinished_deliveries()}
        with self._lock:
            partial = self.path.with_name(self.path.name + ".partial")
            partial.write_text(json.dumps(state), encoding="utf-8")
            os.replace(partial, self.path)  # a reader never sees half a file

    def save_after(self, response: Response) -> Response:
        """An after_request hook: whatever wrote to the sandbox is on disk before it is answered."""
        if request.method not in READ_ONLY_METHODS:
            self.save()
        return response
