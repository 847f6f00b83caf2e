"""A real browser for the pages people look at (the operator console, the sandbox): Debian's Chromium,
headless, driven by Selenium through Debian's chromedriver (`.ci/run` installs both). A test that needs
it skips locally when it is missing, and fails under CI=true."""

from __future__ import annotations

import os
import subprocess
from contextlib import contextmanager

from support.services import require_service

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER_PATH", "/usr/bin/chromedriver")


def browser_problem() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return f"{path} is missing (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    try:
        subprocess.run([CHROMEDRIVER, "--version"], check=True, capture_output=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{CHROMEDRIVER} does not run: {exc}"
    return None


@contextmanager
def chromium(width: int = 1280, height: int = 900):
    """A headless Chromium; quits when the block ends."""
    require_service("Chromium", browser_problem())
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--window-size={width},{height}", "--disable-extensions", "--no-first-run"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(0)  # waits are explicit (support.browser.wait_for), with a deadline
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver, condition, timeout: float = 20):
    """Poll `condition(driver)` until it is truthy, with a deadline (Selenium's WebDriverWait)."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)
