"""Signing in and out of the console."""

from __future__ import annotations

import logging

from flask import Blueprint, g, redirect, render_template, request, session, url_for

from console import csrf, sessions
from console.addresses import plain_http_on_loopback, safe_next

bp = Blueprint("signin", __name__)
log = logging.getLogger("console")


@bp.get("/sign-in")
def form():
    if g.user is not None:
        return redirect(safe_next(request.args.get("next")))
    return render_template("sign_in.html", next=request.args.get("next", ""), error=None,
                           insecure=request.scheme == "http" and not plain_http_on_loopback())


@bp.post("/sign-in")
def submit():
    name = request.form.get("name", "")[:100]
    result = sessions.sign_in(name, request.form.get("password", ""), request.remote_addr or "unknown")
    if result.user is None:
        # The name only: never the password, right or wrong.
        log.info("console sign-in refused for %r from %s: %s", name, request.remote_addr, result.refusal)
        return render_template("sign_in.html", next=request.form.get("next", ""), error=result.refusal,
                               insecure=False), 429 if result.limited else 401
    # A new session from nothing: whatever the browser held before (a planted cookie) is dropped.
    session.clear()
    session["token"] = result.token
    csrf.renew()
    log.info("console sign-in: %s", result.user.name)
    return redirect(safe_next(request.form.get("next")))


@bp.post("/sign-out")
def sign_out():
    sessions.end(session.get("token"))
    session.clear()
    return redirect(url_for("signin.form"))
