"""The URLs machines are told: assets on the main listener by default, on the asset listener
when one is configured (reached on the host the machine reached us on when it binds a
wildcard), or at an operator's base URL."""

from __future__ import annotations

import pytest

from mayu_py.config import load_settings
from mayu_py.server.urls import server_urls


@pytest.mark.parametrize(
    ("assets", "expected"),
    [
        ({}, "http://10.0.0.1:8080/assets"),
        ({"listen": "0.0.0.0:8081"}, "http://10.0.0.1:8081/assets"),
        ({"listen": "10.0.0.5:8081"}, "http://10.0.0.5:8081/assets"),
        ({"listen": "0.0.0.0:8081", "base_url": "http://cdn/x/"}, "http://cdn/x"),
    ],
)
def test_asset_url(assets: dict[str, str], expected: str) -> None:
    flat = {("assets", key): value for key, value in assets.items()}
    settings = load_settings(None, {("server", "listen"): "0.0.0.0:8080", **flat}, environ={})
    urls = server_urls(settings, "http://10.0.0.1:8080/")
    assert urls.assets == expected
    assert urls.https == "https://10.0.0.1:8443"
