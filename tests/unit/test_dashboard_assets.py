"""Every asset the dashboard uses is served by mayu itself: no CDN, no other origin, nothing
to build. Each page's references (script, stylesheet, image, link, form) are local paths that
answer, the static files refer to nothing outside, and the policy allows nothing else."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from mayu_py.server.ui import blueprint
from tests.support.dashboard import TLS, add_user, login
from tests.support.flask_app import Machine, make_app

MAC = "52:54:00:d1:00:01"
STATIC = Path(blueprint.__file__).resolve().parent / "static"
PAGES = (
    "/ui/login",
    "/ui/",
    f"/ui/machines/{MAC}",
    "/ui/hosts",
    "/ui/tenants",
    "/ui/machines/52:54:00:d1:00:99",
)
_REMOTE = re.compile(r"(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}|@import|\burl\(\s*['\"]?(?!/ui/)")


class References(HTMLParser):
    """The URLs a page makes the browser load or go to (src, href, action)."""

    def __init__(self) -> None:
        super().__init__()
        self.loaded: list[str] = []
        self.linked: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            if name == "src" or (tag == "link" and name == "href"):
                self.loaded.append(value)
            elif name in ("href", "action"):
                self.linked.append(value)


@pytest.fixture
def client(tmp_path: Path) -> FlaskClient:
    client = make_app(tmp_path).test_client()
    Machine(client, MAC).ipxe()
    return client


def references(client: FlaskClient, path: str) -> References:
    page = client.get(path, environ_base=TLS)
    assert page.status_code in (200, 404), (path, page.status_code)
    assert page.mimetype == "text/html"
    parser = References()
    parser.feed(page.text)
    return parser


def test_every_page_loads_only_local_assets_that_answer(client: FlaskClient) -> None:
    logged_out = references(client, "/ui/login")
    login(client, add_user(client))
    loaded: set[str] = set(logged_out.loaded)
    for path in PAGES:
        found = references(client, path)
        loaded |= set(found.loaded)
        for url in found.loaded + found.linked:
            assert url.startswith("/") and not url.startswith("//"), (path, url)
    assert {"/ui/static/dashboard.css", "/ui/static/dashboard.js"} <= loaded
    for url in loaded:
        asset = client.get(url, environ_base=TLS)
        assert asset.status_code == 200 and asset.data, url


def test_static_files_refer_to_nothing_outside() -> None:
    files = sorted(STATIC.iterdir())
    assert files
    for path in files:
        text = path.read_text()
        assert not _REMOTE.search(text), (path.name, _REMOTE.search(text))


def test_the_policy_allows_only_the_server_itself(client: FlaskClient) -> None:
    policy = client.get("/ui/login", environ_base=TLS).headers["Content-Security-Policy"]
    sources = {word for part in policy.split(";") for word in part.split()[1:]}
    assert sources == {"'none'", "'self'"}, policy
