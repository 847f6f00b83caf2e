"""The console's Flask app: its cookie, its headers, who may see what, and its pages."""

from __future__ import annotations

import datetime as dt

from flask import Flask, abort, g, redirect, request, session, url_for
from flask.sessions import SecureCookieSessionInterface
from werkzeug.middleware.proxy_fix import ProxyFix

from bookingflow.privacy import mask_email
from bookingflow.providers.stripe_amounts import display
from bookingflow.settings import Settings
from console import csrf, sessions
from console.addresses import plain_http_on_loopback
from models.db import database

COOKIE_NAME = "bookingflow_console"
# Pages reachable signed out: the sign-in form itself, the stylesheet, and the health check.
PUBLIC_ENDPOINTS = frozenset({"signin.form", "signin.submit", "static", "health"})
# Nothing from another host, no script, no inline style; no page may frame the console.
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'none'; style-src 'self'; img-src 'self' data:; "
                           "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")


class ConsoleSessionCookie(SecureCookieSessionInterface):
    """Flask's signed cookie, Secure everywhere but on plain http to the loopback address."""

    def get_cookie_secure(self, app) -> bool:
        return not plain_http_on_loopback()


def _when(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if isinstance(value, dt.datetime) else "–"


def _money(amount, currency) -> str:
    return "–" if amount is None or not currency else display(int(amount), currency)


def build(settings: Settings) -> Flask:
    from console import action_routes, pages, signin

    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=settings.console_secret_key, SESSION_COOKIE_NAME=COOKIE_NAME, SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax", MAX_CONTENT_LENGTH=64 * 1024, SETTINGS=settings,
    )
    app.session_interface = ConsoleSessionCookie()
    if settings.trusted_proxy_count:
        # The client address the sign-in limits count by, and the scheme and host the cookie is judged by.
        count = settings.trusted_proxy_count
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=count, x_proto=count, x_host=count)
    app.jinja_env.filters.update(when=_when, money=_money, masked=mask_email)
    app.jinja_env.globals.update(csrf_token=csrf.token)

    @app.before_request
    def open_connection():
        database.connect(reuse_if_open=True)

    @app.before_request
    def signed_in_only():
        g.user = sessions.user_of(session.get("token"))
        if g.user is not None or request.endpoint in PUBLIC_ENDPOINTS:
            return None
        if request.method in ("GET", "HEAD"):
            return redirect(url_for("signin.form", next=request.full_path.rstrip("?")))
        abort(403, description="Sign in first.")

    app.before_request(csrf.check)

    @app.after_request
    def headers(response):
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        if request.endpoint != "static":
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.teardown_request
    def close_connection(exc):
        if not database.is_closed():
            database.close()

    @app.get("/healthz")
    def health():
        return {"status": "ok"}

    app.register_blueprint(signin.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(action_routes.bp)
    pages.register_errors(app)
    return app
