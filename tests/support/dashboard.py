"""The dashboard's side of tests: its CSRF tokens in pages, logging in through Flask's test
client (on the HTTPS listener's marker), and a real headless Chromium (Debian's, driven by
selenium through Debian's chromedriver: nothing downloaded)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from flask.testing import FlaskClient
from selenium import webdriver
from selenium.common.exceptions import (
    NoAlertPresentException,
    NoSuchElementException,
    StaleElementReferenceException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.alert import Alert
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from mayu_py.server.boot import TLS_ENVIRON_KEY
from tests.support.flask_app import AUTH
from tests.support.wait import wait_for

TLS = {TLS_ENVIRON_KEY: True}
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    """The CSRF token (or login nonce) a page's forms carry."""
    match = _CSRF.search(html)
    assert match, f"no CSRF token in the page:\n{html[:2000]}"
    return match.group(1)


def add_user(client: FlaskClient, name: str = "alice") -> str:
    """Add a user with the shared admin token; returns their token."""
    response = client.post("/api/v1/users", headers=AUTH, json={"name": name})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["token"]


def login(client: FlaskClient, token: str) -> str:
    """Log the test client in over "HTTPS"; returns the session's CSRF token."""
    form = client.get("/ui/login", environ_base=TLS)
    answer = client.post(
        "/ui/login", data={"csrf_token": csrf_of(form.text), "token": token}, environ_base=TLS
    )
    assert answer.status_code == 303, answer.text
    return csrf_of(client.get("/ui/", environ_base=TLS).text)


@contextmanager
def chromium(window: str = "1440,960") -> Iterator[WebDriver]:
    """A headless Chromium under selenium. The server's CA is a throw-away one the browser
    does not know: its certificate errors are accepted (the page is still https://, so
    Secure cookies behave as in production)."""
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", f"--window-size={window}"):
        options.add_argument(argument)
    options.binary_location = "/usr/bin/chromium"
    options.accept_insecure_certs = True
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver: WebDriver, path: Path) -> Path:
    """Save a PNG of the page and check it is one."""
    assert driver.save_screenshot(str(path)), path
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return path


# -- the board in a browser ------------------------------------------------------------


def column_of(driver: WebDriver, mac: str) -> str | None:
    """The state column the board shows the machine in, if it shows it (read in one script:
    a live panel may replace its elements between two WebDriver calls)."""
    column = driver.execute_script(
        'const card = document.querySelector(`li.card[data-machine="${arguments[0]}"]`);'
        "const column = card && card.closest('section');"
        "return column ? column.id : null;",
        mac,
    )
    return column.removeprefix("state-") if column else None


def text_of(driver: WebDriver, element_id: str) -> str | None:
    """The text of the element with that id, if the page has one."""
    return driver.execute_script(
        "const e = document.getElementById(arguments[0]); return e && e.textContent.trim();",
        element_id,
    )


def act(driver: WebDriver, what: str, step: Callable[[], object]) -> None:
    """Run a step on elements of a live panel, again if the panel replaced them meanwhile."""

    def attempt() -> bool:
        try:
            step()
        except (StaleElementReferenceException, NoSuchElementException):
            return False
        return True

    wait_for(what, attempt)


def alert_of(driver: WebDriver) -> Alert | None:
    """The open alert (a confirmation), if any."""
    try:
        return driver.switch_to.alert
    except NoAlertPresentException:
        return None


def log_in(driver: WebDriver, base: str, token: str) -> None:
    """Open the dashboard at `base` and submit the login form with `token`."""
    driver.get(f"{base}/ui/")
    wait_for("the login form", lambda: driver.find_elements(By.ID, "token"))
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.ID, "login").click()
