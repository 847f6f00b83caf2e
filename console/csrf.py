"""CSRF protection for every form: a random token per session, kept in the signed session cookie,
sent back in a hidden field and compared in constant time on every POST.

Chosen over Flask-WTF's CSRFProtect: the console has no other use for WTForms, and the check is these
few lines on top of Flask's signed session, which already makes the token impossible to forge or read
from another site. A new token is made at sign-in, with the new session.
"""

from __future__ import annotations

import hmac
import secrets

from flask import abort, request, session

FIELD = "csrf_token"


def token() -> str:
    """The session's token (made on first use), for a form's hidden field."""
    if FIELD not in session:
        session[FIELD] = secrets.token_urlsafe(32)
    return session[FIELD]


def renew() -> None:
    session[FIELD] = secrets.token_urlsafe(32)


def check() -> None:
    """Before any POST: 400 unless the form carries the session's token."""
    if request.method != "POST":
        return
    expected = session.get(FIELD)
    sent = request.form.get(FIELD, "")
    if not expected or not hmac.compare_digest(expected.encode(), sent.encode()):
        abort(400, description="The form was stale or did not come from this console (CSRF token missing or "
                               "wrong). Go back, reload the page and try again.")
