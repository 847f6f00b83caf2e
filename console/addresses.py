"""What the console judges by the request's address: whether the cookie may go without TLS, and where a
sign-in may send the browser on to."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import request, url_for

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]"})


def plain_http_on_loopback() -> bool:
    """http://127.0.0.1 (a developer's machine): the one place the cookie may go without TLS."""
    return request.scheme == "http" and request.host.rsplit(":", 1)[0] in LOOPBACK_HOSTS


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path of this console only, never another host."""
    target = target or ""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return url_for("pages.dashboard")
    # A path inside the console (request.full_path leaves out where it is mounted, `/console` in dev).
    return request.script_root + target
