"""A newcomer's first booking in a real browser (Chromium), on a real `bookingflow dev`: from the home
page, choose a session type, schedule in the sandbox's Calendly embed, pay on the sandbox's Checkout,
land on the booking's page as it polls to BOOKING_CONFIRMED, then cancel it."""

from __future__ import annotations

import pytest

from support.browser import chromium, wait_for
from support.devserver import running_dev

pytestmark = pytest.mark.browser


def text_of(driver, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    found = driver.find_elements(By.ID, element_id)
    return found[0].text if found else ""


def test_a_booking_clicked_from_the_home_page_to_confirmed_then_cancelled(tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    with running_dev(tmp_path) as dev, chromium() as driver:
        driver.get(dev.base + "/")
        driver.find_element(By.ID, "client").click()

        # 1. the session type and its currency
        wait_for(driver, lambda d: d.find_elements(By.ID, "type-deep-dive"))
        driver.find_element(By.ID, "type-deep-dive").click()
        Select(driver.find_element(By.ID, "currency")).select_by_value("eur")
        assert text_of(driver, "price") == "€140.00"
        driver.find_element(By.ID, "name").send_keys("Ada Lovelace")
        driver.find_element(By.ID, "email").send_keys("ada@example.com")
        driver.find_element(By.ID, "continue").click()

        # 2. the Calendly embed: its page tells ours, which reports the slot
        wait_for(driver, lambda d: "/client/schedule.html" in d.current_url)
        booking_id = driver.current_url.split("booking=")[1]
        driver.switch_to.frame(wait_for(driver, lambda d: d.find_element(By.ID, "calendly")))
        wait_for(driver, lambda d: d.find_elements(By.TAG_NAME, "button"))[0].click()
        driver.switch_to.default_content()

        # 3. the confirmation, until the checkout is ready; 4. Checkout
        wait_for(driver, lambda d: "/client/confirm.html" in d.current_url)
        pay = driver.find_element(By.ID, "pay")
        wait_for(driver, lambda d: pay.is_enabled())
        assert text_of(driver, "price") == "€140.00"
        pay.click()
        wait_for(driver, lambda d: "/_sandbox/stripe/checkout/" in d.current_url)
        # The deep dive takes promotion codes, and dev's sandbox adds 19% tax: 140.00 - 20% = 112.00, + 21.28.
        driver.find_element(By.NAME, "promotion_code").send_keys("SAVE20")
        driver.find_element(By.CSS_SELECTOR, "button[value=paid]").click()

        # 5. back from Checkout on the booking's page, which polls to confirmed
        wait_for(driver, lambda d: d.current_url == f"{dev.base}/bookings/{booking_id}?checkout=success")
        assert "Stripe has your payment" in text_of(driver, "checkout-notice")
        wait_for(driver, lambda d: text_of(d, "raw-state") == "BOOKING_CONFIRMED", timeout=30)
        assert dev.booking(booking_id)["amount_paid"] == 13328
        (payment,) = dev.booking(booking_id)["payments"]
        assert (payment["amount_discount"], payment["amount_tax"]) == (2800, 2128)

        driver.find_element(By.ID, "reason").send_keys("plans changed")
        driver.find_element(By.ID, "cancel").click()
        wait_for(driver, lambda d: text_of(d, "raw-state") == "REFUND_COMPLETED", timeout=30)
        # The sandbox's default slot is a day and a half ahead: the deep dive's policy refunds half inside 48 hours.
        assert text_of(driver, "refunded") == "€66.64"  # half of what was paid
        assert not driver.find_element(By.ID, "cancel").is_displayed()
