"""What `bookingflow dev` serves beside the service, for a newcomer to click through: a home page
linking everything, the reference client (static pages on the public API only, in `client/`), a
control page per booking that plays the invitee and the card holder in the sandbox, and the outbox.

Never served by `web`: only `bookingflow dev` attaches it (ops/dev.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flask import Blueprint, Flask


@dataclass(frozen=True)
class DevSite:
    """What the pages need to know of the running `dev`."""

    sandbox: object  # sandbox.Sandbox: its simulator endpoints are driven in process
    sandbox_prefix: str  # where the sandbox is mounted, e.g. /_sandbox
    database: str  # where the database is, as shown to the reader
    sandbox_file: Path | None  # where the sandbox's state is kept, None if not kept
    console_path: str | None  # where the operator console is mounted, None if it is not


def attach(app: Flask, site: DevSite) -> None:
    """Add the dev pages to the web app (the same origin as the API, as a frontend would be)."""
    from ops.devsite import bookings_list, control, home, outbox, reference_client

    bp = Blueprint("devsite", __name__)
    for module in (home, bookings_list, reference_client, control, outbox):
        module.register(bp)
    app.config["DEVSITE"] = site
    app.register_blueprint(bp)
