"""Swagger UI's Authorize button works, in a real browser.

The fake issuer is served on 127.0.0.1 (one origin) and the Swagger UI example
(examples/swagger_ui.py: assets from the swagger-ui-bundle-v2 package, no CDN) runs under
uvicorn on 127.0.0.1 (another origin). Headless Chromium, driven by selenium through Debian's
chromedriver, opens ``/docs`` and clicks through it like a person: "Try it out" and "Execute"
without a token (401), Authorize with a client id and secret (a cross-origin token request:
CORS preflight, then the client-credentials POST), "Execute" again (200).

Every wait is bounded by ``WAIT`` seconds, the driver's own commands included. Without
Chromium the test skips, unless it runs as root with apt-get: there ``make test`` installs
it first, so a missing browser is a failure.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal, TypeVar

import pytest
from selenium import webdriver
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chromium.remote_connection import ChromiumRemoteConnection
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.client_config import ClientConfig
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from resource_guard import TokenVerifier
from resource_guard.testing import FakeIssuer
from tests.loopback import LoopbackServer, load_example

pytestmark = [pytest.mark.browser, pytest.mark.slow]

T = TypeVar("T")

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = (
    "--headless",
    "--no-sandbox",  # root, in a container
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",  # a closed network: no calls home
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,1600",
)
WAIT = 15
"""Seconds any one step may take: a driver command, a page load, an element to appear."""
BUDGET = 60.0
"""Seconds the whole click-through may take."""

AUDIENCE = "api://orders"
CLIENT_ID = "swagger-ui"
CLIENT_SECRET = "swagger-ui-secret"
OPERATION = "#operations-default-list_orders_orders_get"  # GET /orders, tag "default"
STATUS_CELL = f"{OPERATION} .live-responses-table tr.response td.response-col_status"
DIALOG_BUTTONS = ".modal-ux .auth-btn-wrapper"


def require_chromium() -> None:
    """Skip without Chromium where it cannot be installed; fail where it should have been."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if not missing:
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        pytest.fail(
            f"{', '.join(missing)} missing: `make test` installs Debian's chromium and "
            "chromium-driver first (`make packages`)"
        )
    pytest.skip(
        f"{', '.join(missing)} missing and not installable here (needs root and apt-get): "
        "apt-get install chromium chromium-driver"
    )


@pytest.fixture(scope="module")
def issuer() -> Iterator[FakeIssuer]:
    fake = FakeIssuer(audience=AUDIENCE, algorithm="ES256")
    fake.register_client(CLIENT_ID, CLIENT_SECRET, scopes=("orders:read",))
    with fake.serve():
        yield fake


@pytest.fixture(scope="module")
def api(issuer: FakeIssuer) -> Iterator[str]:
    verifier = TokenVerifier(issuer.issuer, AUDIENCE)  # real HTTP to the served issuer
    with LoopbackServer(load_example("swagger_ui").create_app(verifier)) as url:
        yield url


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    require_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    service = Service(str(CHROMEDRIVER))  # a path of our own: selenium-manager never runs
    service.start()
    try:
        url = service.service_url
        connection = ChromiumRemoteConnection(
            url,
            vendor_prefix="goog",
            browser_name="chrome",
            ignore_proxy=True,
            client_config=ClientConfig(remote_server_addr=url, timeout=WAIT),
        )
        driver = webdriver.Remote(command_executor=connection, options=options)
        try:
            driver.set_page_load_timeout(WAIT)
            driver.set_script_timeout(WAIT)
            yield driver
        finally:
            driver.quit()
    finally:
        service.stop()


def page_text(driver: WebDriver) -> str:
    try:
        return driver.find_element(By.TAG_NAME, "body").text[:1500]
    except Exception as exc:  # the page itself is what failed
        return f"<unreadable: {type(exc).__name__}>"


def wait_until(
    driver: WebDriver, condition: Callable[[WebDriver], Literal[False] | T], what: str
) -> T:
    """``condition``'s first truthy value within ``WAIT`` seconds, else a failure that
    shows what the page says (an auth error, "Failed to fetch", ...)."""
    waiting = WebDriverWait(
        driver,
        WAIT,
        poll_frequency=0.05,
        ignored_exceptions=(NoSuchElementException, StaleElementReferenceException),
    )
    try:
        return waiting.until(condition)
    except TimeoutException:
        pytest.fail(f"no {what} within {WAIT} s; the page shows:\n{page_text(driver)}")


def click(driver: WebDriver, selector: str, what: str) -> None:
    clickable = expected_conditions.element_to_be_clickable((By.CSS_SELECTOR, selector))
    wait_until(driver, clickable, what).click()


def fill(driver: WebDriver, selector: str, text: str) -> None:
    visible = expected_conditions.visibility_of_element_located((By.CSS_SELECTOR, selector))
    field: WebElement = wait_until(driver, visible, f"field {selector}")
    field.clear()
    field.send_keys(text)


def response_code(driver: WebDriver, *, not_: str | None = None) -> str:
    """The code Swagger UI shows for the last "Execute" (waiting for one other than ``not_``)."""

    def shown(d: WebDriver) -> str | Literal[False]:
        words = d.find_element(By.CSS_SELECTOR, STATUS_CELL).text.split()
        return words[0] if words and words[0] != not_ else False

    return wait_until(driver, shown, "response code")


def test_authorize_gets_a_token_and_try_it_out_gets_200(
    browser: WebDriver, api: str, issuer: FakeIssuer
) -> None:
    started = time.monotonic()
    browser.get(f"{api}/docs")

    # Without a token: the protected route answers 401.
    click(browser, f"{OPERATION} .opblock-summary-control", "GET /orders in the list")
    click(browser, f"{OPERATION} .try-out__btn", "Try it out")
    click(browser, f"{OPERATION} .execute", "Execute")
    assert response_code(browser) == "401"

    # Authorize: client credentials at the fake issuer's token endpoint, across origins.
    click(browser, ".auth-wrapper .btn.authorize", "the Authorize button")
    fill(browser, ".modal-ux input[data-name=clientId]", CLIENT_ID)
    fill(browser, ".modal-ux input[data-name=clientSecret]", CLIENT_SECRET)
    click(browser, f"{DIALOG_BUTTONS} .btn.authorize", "the dialog's Authorize")
    logout = expected_conditions.text_to_be_present_in_element(
        (By.CSS_SELECTOR, f"{DIALOG_BUTTONS} .btn.authorize"), "Logout"
    )
    wait_until(browser, logout, "Logout button (the token was granted)")
    click(browser, f"{DIALOG_BUTTONS} .btn-done", "the dialog's Close")
    assert issuer.counts["token"] == 1

    # With the token: 200.
    click(browser, f"{OPERATION} .execute", "Execute")
    assert response_code(browser, not_="401") == "200"
    assert time.monotonic() - started < BUDGET
