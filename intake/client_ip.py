"""Who is asking: the client address that the rate limit and the webhook source allowlists go by.

It is `request.remote_addr`, the peer of the web process. Behind proxies the operator says how many
there are (TRUSTED_PROXY_COUNT) and ProxyFix takes the address that many hops back in
X-Forwarded-For; with none trusted the header is ignored, since any client can send one.
"""

from __future__ import annotations

import ipaddress

from flask import Flask, request
from werkzeug.middleware.proxy_fix import ProxyFix

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def trust_proxies(app: Flask, count: int) -> None:
    if count:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=count)


def client_address() -> Address | None:
    """The client's address, or None when the peer has none (a unix socket, say)."""
    try:
        address = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        return None
    # A dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d; networks are written as IPv4.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address
