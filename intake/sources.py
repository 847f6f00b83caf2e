"""Source-network allowlists of the webhook endpoints (STRIPE_WEBHOOK_SOURCE_NETWORKS,
CALENDLY_WEBHOOK_SOURCE_NETWORKS): a delivery from any other address is refused with 403 before
anything else is done. An empty list accepts any source; the signature is checked either way."""

from __future__ import annotations

import logging

from flask import Flask, request

from bookingflow.settings import IPNetwork, Settings
from intake.client_ip import client_address
from intake.errors import error_response
from intake.throttled_log import ThrottledWarning

STRIPE_PATH = "/webhooks/stripe"
CALENDLY_PATH = "/webhooks/calendly"

log = logging.getLogger(__name__)


def allowlists(settings: Settings) -> dict[str, tuple[IPNetwork, ...]]:
    configured = {STRIPE_PATH: settings.stripe_webhook_source_networks,
                  CALENDLY_PATH: settings.calendly_webhook_source_networks}
    return {path: networks for path, networks in configured.items() if networks}


def init_app(app: Flask, settings: Settings) -> None:
    networks_by_path = allowlists(settings)
    if not networks_by_path:
        return
    # One per endpoint, so that refusals at one do not hide those at the other.
    refusals = {path: ThrottledWarning(log) for path in networks_by_path}

    @app.before_request
    def refuse_unlisted_sources():
        networks = networks_by_path.get(request.path)
        if networks is None:
            return None
        address = client_address()
        # An IPv4 address is never in an IPv6 network (and back): `in` answers False, no error.
        if address is not None and any(address in network for network in networks):
            return None
        # Worth a look when it is the provider: its published addresses changed, or the proxy count is wrong.
        refusals[request.path].warning("delivery to %s refused: %s is not in its source networks",
                                       request.path, address)
        return error_response(403, "source_not_allowed",
                              "deliveries to this endpoint are not accepted from this address")
