"""The dashboard in a real browser: Debian's headless Chromium, driven by selenium through
Debian's chromedriver, against a live `mayu serve` on its HTTPS listener (default config:
unknown machines are discovered, not approved). Machines are played by the test's own HTTP
requests (the /ipxe, /ignition and /report conversation). A person logs in with their token,
watches machines change state without a reload, approves one and reinstalls another; the
events name them; a wrong token and an action without the CSRF token are refused; an agent
host's first heartbeat shows on the open hosts page; every resource the browser loaded came
from the server itself. Screenshots go to artifacts/dashboard/ (git-ignored)."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from tests.conftest import REPO, RunningServer
from tests.support.boot import enroll, fetch_config, ipxe
from tests.support.dashboard import act, alert_of, chromium, column_of, log_in, screenshot, text_of
from tests.support.wait import wait_for

pytestmark = pytest.mark.peer

ARTIFACTS = REPO / "artifacts" / "dashboard"
NEW = "52:54:00:da:00:01"  # discovered while the board is open, then approved in the browser
OLD = "52:54:00:da:00:02"  # installs while the board is open, then reinstalled in the browser
SPARE = "52:54:00:da:00:03"  # the target of the forged action


def machine_state(server: RunningServer, mac: str) -> str:
    answer = server.api("GET", f"/api/v1/machines/{mac}")
    assert answer.status_code == 200, answer.text
    return answer.json()["state"]


def last_event(server: RunningServer, mac: str) -> dict:
    answer = server.api("GET", f"/api/v1/machines/{mac}/events")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    return (body["items"] if isinstance(body, dict) else body)[-1]


def test_operator_in_chromium(server: RunningServer) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    added = server.api("POST", "/api/v1/users", json={"name": "alice"})
    assert added.status_code == 201, added.text
    alice = added.json()["token"]
    old_token = enroll(server, OLD.replace(":", "-"))
    ipxe(server.url, SPARE.replace(":", "-"))
    base = server.tls_url

    with chromium("1280,860") as driver:
        log_in(driver, base, alice + "x")
        error = wait_for("the refusal", lambda: driver.find_elements(By.ID, "login-error"))
        assert "/ui/login" in driver.current_url and error[0].text
        assert not driver.find_elements(By.ID, "who")
        screenshot(driver, ARTIFACTS / "01-wrong-token.png")

        log_in(driver, base, alice)
        wait_for("the board", lambda: text_of(driver, "who") == "alice")
        assert column_of(driver, OLD) == "configured"
        assert column_of(driver, NEW) is None
        driver.execute_script("window.sameDocument = true;")

        # Machines talk to the server; the open board follows without a reload.
        ipxe(server.url, NEW.replace(":", "-"))
        wait_for("the new machine on the board", lambda: column_of(driver, NEW) == "discovered")
        fetch_config(server.url, OLD.replace(":", "-"), old_token, server.ca_file)
        report = requests.post(
            f"{server.url}/report",
            params={"mac": OLD.replace(":", "-"), "token": old_token},
            json={"event": "installed"},
            timeout=10,
        )
        assert report.ok, report.text
        wait_for("the installed machine", lambda: column_of(driver, OLD) == "installed")
        assert driver.execute_script("return window.sameDocument === true;"), "page reloaded"
        assert "live" in text_of(driver, "live-status")
        screenshot(driver, ARTIFACTS / "02-board-live.png")

        # Approve the discovered machine through its page.
        card = f'li.card[data-machine="{NEW}"] a'
        act(driver, "the card", lambda: driver.find_element(By.CSS_SELECTOR, card).click())
        wait_for("its page", lambda: text_of(driver, "machine-state") == "discovered")

        def approve() -> None:
            Select(driver.find_element(By.ID, "approve-role")).select_by_value("controller")
            driver.find_element(By.ID, "approve").click()

        act(driver, "approving", approve)
        wait_for("the approved state", lambda: text_of(driver, "machine-state") == "configured")
        assert machine_state(server, NEW) == "configured"
        approved = last_event(server, NEW)
        assert approved["source"].startswith("user:alice@"), approved
        screenshot(driver, ARTIFACTS / "03-approved.png")

        # Reinstall the installed one (the page asks first).
        driver.get(f"{base}/ui/machines/{OLD}")
        act(driver, "reinstalling", lambda: driver.find_element(By.ID, "reinstall").click())
        alert = wait_for("the confirmation", lambda: alert_of(driver))
        assert "Reinstall" in alert.text
        alert.accept()
        wait_for("the reinstalled state", lambda: text_of(driver, "machine-state") == "configured")
        assert machine_state(server, OLD) == "configured"
        reinstalled = last_event(server, OLD)
        assert reinstalled["source"].startswith("user:alice@"), reinstalled
        assert "reinstall" in reinstalled["cause"]
        assert "user:alice@" in text_of(driver, "timeline")
        screenshot(driver, ARTIFACTS / "04-reinstalled.png")

        # The browser's own session, without the CSRF token: refused, nothing changes.
        forged = driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "fetch(arguments[0], {method: 'POST', credentials: 'same-origin',"
            " headers: {'Content-Type': 'application/x-www-form-urlencoded'},"
            " body: 'role=worker'}).then(r => done(r.status), e => done(String(e)));",
            f"/ui/machines/{SPARE}/approve",
        )
        assert forged == 403
        assert machine_state(server, SPARE) == "discovered"

        # An agent host's first heartbeat shows on the open hosts page.
        driver.get(f"{base}/ui/hosts")
        assert text_of(driver, "host-dash-host") is None
        approved_host = server.api("POST", "/api/v1/hosts/dash-host/approve")
        assert approved_host.status_code == 201, approved_host.text
        beat = requests.post(
            f"{server.url}/api/v1/hosts",
            json={"name": "dash-host", "cpus": 4, "memory_mib": 8192},
            headers={"Authorization": f"Bearer {approved_host.json()['token']}"},
            timeout=10,
        )
        assert beat.status_code == 200, beat.text
        shown = wait_for("the host", lambda: text_of(driver, "host-dash-host"))
        assert "alive" in shown and "CPUs 0 / 4" in shown and "8192" in shown, shown
        screenshot(driver, ARTIFACTS / "05-hosts.png")

        # Every resource the pages loaded came from the server itself (no CDN).
        origins = driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name);"
        )
        here = urlsplit(base).netloc
        assert origins and all(urlsplit(url).netloc == here for url in origins), origins
