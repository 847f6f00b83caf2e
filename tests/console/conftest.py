"""Fixtures of the console's tests: its app on the suite's database and broker (with a key of its own),
an operator's account, and a test client signed in as that operator."""

from __future__ import annotations

import pytest

from bookingflow import settings as settings_module
from support.console import PASSWORD, CONSOLE_KEY, Operator


@pytest.fixture(scope="session")
def console_app(app, broker, service_settings):
    from console import create_app

    application = create_app(service_settings.replace(console_secret_key=CONSOLE_KEY))
    application.config["TESTING"] = True
    settings_module.configure(service_settings)
    return application


@pytest.fixture
def operator_account(console_app):
    from console.passwords import add_user

    return add_user("ada", PASSWORD)


@pytest.fixture
def anonymous(console_app):
    """A browser that has not signed in."""
    return Operator(console_app.test_client(), console_app)


@pytest.fixture
def operator(console_app, operator_account):
    """A browser signed in as the operator ada."""
    signed_in = Operator(console_app.test_client(), console_app)
    response = signed_in.sign_in("ada", PASSWORD)
    assert response.status_code == 302, response.text
    return signed_in
