"""Runs the Flask app under gunicorn (the production WSGI server) from inside `mayu serve`."""

from __future__ import annotations

from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication


class GunicornServer(BaseApplication):  # type: ignore[misc]
    """A gunicorn application around an already-built Flask app (preloaded in the master)."""

    def __init__(self, app: Flask, options: dict[str, Any]) -> None:
        self._app = app
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return self._app
