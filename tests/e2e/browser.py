"""Debian's headless Chromium driven by Selenium, installed by the test setup when missing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from tests.support.debian import ensure_commands
from tests.support.server import free_port

PACKAGES = ("chromium", "chromium-driver")
# As root on this kind of machine Chromium needs --no-sandbox; the background-networking flags
# stop it phoning home at start (connections the closed network would refuse anyway).
BASE_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1800",
)


def ensure_chromium() -> tuple[str, str]:
    """Paths of chromium and chromedriver; apt-get installs them first when they are missing."""
    chromium, driver = ensure_commands(PACKAGES, ("chromium", "chromedriver"))
    return chromium, driver


@contextmanager
def offline_chromium(profile: Path) -> Iterator[webdriver.Chrome]:
    """Headless Chromium that can reach 127.0.0.1 only: names do not resolve, and every other
    address goes to a proxy port nobody listens on. The performance log records each request."""
    chromium, driver_path = ensure_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in BASE_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument("--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1")
    options.add_argument(f"--proxy-server=http://127.0.0.1:{free_port()}")
    options.add_argument("--proxy-bypass-list=127.0.0.1")
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    try:
        yield driver
    finally:
        driver.quit()
