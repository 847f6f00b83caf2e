"""The console in a real browser (Chromium through Selenium): an operator signs in, finds the flagged
booking, retries it and sees it move on, then looks at the dashboard's charts."""

from __future__ import annotations

import pytest

from models.db import utcnow
from models.states import State
from support.browser import chromium, wait_for
from support.console import PASSWORD
from support.records import booking_in

pytestmark = pytest.mark.browser


@pytest.fixture
def console_server(console_app):
    from sandbox import serve_in_thread

    server, base = serve_in_thread(console_app)
    yield base
    server.shutdown()


def test_an_operator_signs_in_retries_a_flagged_booking_and_sees_the_charts(console_server, operator_account, worker,
                                                                             session_type):
    from selenium.webdriver.common.by import By

    booking_in(session_type, State.BOOKING_CONFIRMED)
    # Automation gave up on this one; its payment hold ran out long ago, which its step acts on.
    flagged = booking_in(session_type, State.PAYMENT_FAILED, flagged_at=utcnow(), flag_reason="gave up after 3 recoveries")
    with chromium() as browser:
        browser.get(console_server + "/bookings")
        wait_for(browser, lambda b: b.find_elements(By.ID, "sign-in"))  # sent to sign in first
        browser.find_element(By.NAME, "name").send_keys("ada")
        browser.find_element(By.NAME, "password").send_keys(PASSWORD)
        browser.find_element(By.CSS_SELECTOR, "#sign-in button").click()
        wait_for(browser, lambda b: b.find_elements(By.ID, "filters"))  # back where it was going

        browser.find_element(By.CSS_SELECTOR, "#filters input[name=flagged]").click()
        browser.find_element(By.CSS_SELECTOR, "#filters button").click()
        wait_for(browser, lambda b: "flagged=1" in b.current_url)
        links = browser.find_elements(By.CSS_SELECTOR, "#bookings a.booking-link")
        assert len(links) == 1
        links[0].click()
        wait_for(browser, lambda b: b.find_elements(By.ID, "booking-flag"))
        assert browser.find_element(By.ID, "booking-state").text == "PAYMENT_FAILED"

        browser.find_element(By.CSS_SELECTOR, "#retry input[name=reason]").send_keys("the outage is over")
        browser.find_element(By.CSS_SELECTOR, "#retry button").click()
        wait_for(browser, lambda b: "Queued" in b.find_element(By.CSS_SELECTOR, ".message.done").text)

        def moved_on(b):
            b.get(f"{console_server}/bookings/{flagged.id}")
            return b.find_element(By.ID, "booking-state").text == "IDLE"
        wait_for(browser, moved_on)
        assert not browser.find_elements(By.ID, "booking-flag")
        assert "the outage is over" in browser.find_element(By.ID, "audit").text

        browser.find_element(By.LINK_TEXT, "Dashboard").click()
        wait_for(browser, lambda b: b.find_elements(By.ID, "charts"))
        charts = browser.find_elements(By.CSS_SELECTOR, "#charts svg.chart")
        assert len(charts) >= 4 and all(chart.size["width"] > 0 for chart in charts)
        assert browser.find_elements(By.CSS_SELECTOR, "#charts svg.chart rect.bar")
