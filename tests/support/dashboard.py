"""The dashboard's side of tests: its CSRF tokens in pages, logging in through Flask's test
client (on the HTTPS listener's marker), and a real headless Chromium (Debian's, driven by
selenium through Debian's chromedriver: nothing downloaded)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flask.testing import FlaskClient

from mayu_py.server.boot import TLS_ENVIRON_KEY
from tests.support.flask_app import AUTH

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
def chromium(window: str = "1440,960") -> Iterator[object]:
    """A headless Chromium under selenium. The server's CA is a throw-away one the browser
    does not know: its certificate errors are accepted (the page is still https://, so
    Secure cookies behave as in production)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

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


def screenshot(driver: object, path: Path) -> Path:
    """Save a PNG of the page and check it is one."""
    assert driver.save_screenshot(str(path)), path  # type: ignore[attr-defined]
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return path
