"""The asset listener of `mayu serve` (when `assets.listen` is set): kernels, initrds and
images from a gunicorn of their own with gthread workers, so that any number of slow
downloads holds this listener's threads and never the sync workers that serve iPXE scripts,
Ignition configs and reports. Without it /assets is served by the main listener (no extra
process); docs/benchmarks.md ("Asset plane") has what each costs.

The child is run like every child of `mayu serve` (cli/children.py); it needs no token and
no store, only the assets root.
"""

from __future__ import annotations

import http.client

from mayu_py.cli.children import (
    SupervisedChild,
    answers_healthz,
    child_arguments,
    connect_address,
)
from mayu_py.cli.logging_setup import configure_logging
from mayu_py.cli.wsgi import GunicornServer, die_with_parent, server_options
from mayu_py.config import Settings
from mayu_py.server.assets import asset_app


def _child(settings: Settings, workers: int, parent_pid: int) -> None:
    die_with_parent(parent_pid)
    configure_logging(False)
    assert settings.assets.listen is not None
    options = server_options(
        settings.assets.listen,
        workers,
        "mayu-serve-assets",
        worker_class="gthread",
        threads=settings.assets.threads,
    )
    GunicornServer(asset_app(settings.assets_root), options).run()


class AssetListener:
    """Runs and watches the asset gunicorn child."""

    def __init__(self, settings: Settings, workers: int) -> None:
        assert settings.assets.listen is not None
        self.listen = settings.assets.listen
        self.child = SupervisedChild("asset listener", __name__, settings, [str(workers)])

    def start(self) -> None:
        """Start the child; ConfigError (one line) unless it listens in time."""
        self.child.start(self.listen, self._answers)

    def _answers(self) -> bool:
        connection = http.client.HTTPConnection(*connect_address(self.listen), timeout=2)
        return answers_healthz(connection)

    def stop(self) -> None:
        self.child.stop()


def main() -> None:
    """The child's entry: `python -m mayu_py.cli.asset_listener PARENT_PID WORKERS`."""
    settings, parent_pid, args = child_arguments()
    _child(settings, int(args[0]), parent_pid)


if __name__ == "__main__":
    main()
