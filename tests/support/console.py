"""The operator console as a browser uses it over HTTP (Flask's test client): the CSRF token read from the
form it came with, sign-in, forms posted, the session cookie decoded to see what it holds."""

from __future__ import annotations

import re
import secrets

CONSOLE_KEY = secrets.token_urlsafe(32)
PASSWORD = "correct horse battery staple"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class Operator:
    def __init__(self, client, app):
        self.client, self.app = client, app

    def csrf(self, page: str = "/sign-in") -> str:
        """The token of the forms on `page`, as the browser would send it back."""
        match = CSRF.search(self.client.get(page).get_data(as_text=True))
        assert match, f"no form with a CSRF token on {page}"
        return match.group(1)

    def sign_in(self, name: str, password: str, **environ):
        return self.client.post("/sign-in", data={"name": name, "password": password, "csrf_token": self.csrf()},
                                environ_base=environ)

    def post(self, path: str, data: dict | None = None, page: str = "/"):
        """A form on `page` posted to `path`, with the page's token."""
        return self.client.post(path, data={**(data or {}), "csrf_token": self.csrf(page)})

    def get(self, path: str):
        return self.client.get(path)

    def page(self, path: str) -> str:
        response = self.client.get(path)
        assert response.status_code == 200, (path, response.status_code)
        return response.get_data(as_text=True)

    def session(self) -> dict:
        """What the signed session cookie holds now ({} without one)."""
        from console.web import COOKIE_NAME

        cookie = self.client.get_cookie(COOKIE_NAME)
        if cookie is None:
            return {}
        return dict(self.app.session_interface.get_signing_serializer(self.app).loads(cookie.value))
