"""The BMC runner process of `mayu serve` (server/power_runner.py does the work).

Why a process: a BMC call takes 0.01-3 s when the BMC answers and up to ~13 s when it does
not; run inside a gunicorn worker it would hold that worker away from /ipxe for as long,
and a thread pool inside each worker would still share its interpreter (GIL, memory, the
worker's timeout and restarts). In its own process, with a bounded thread pool, BMC calls
cannot delay the boot plane; they only meet it in the store, in short transactions.

Run like every child of `mayu serve` (cli/children.py). Started when `mayu serve` starts and
considered up once its doorbell (an abstract unix socket named after the data dir) is bound.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from types import FrameType

from mayu_py.cli.children import SupervisedChild, child_arguments
from mayu_py.cli.logging_setup import configure_logging
from mayu_py.cli.wsgi import die_with_parent
from mayu_py.config import Settings
from mayu_py.errors import ConfigError, MayuError
from mayu_py.server import doorbell
from mayu_py.server.app import power_service
from mayu_py.server.doorbell import Doorbell
from mayu_py.server.power_runner import PowerRunner
from mayu_py.store import open_store

START_TIMEOUT = 20.0


class BmcRunnerProcess:
    """Starts the runner child and waits until it listens; then watches it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.child = SupervisedChild("BMC runner", __name__, settings)

    def start(self) -> None:
        """ConfigError (one line) unless the runner is up within START_TIMEOUT."""
        self.child.spawn()
        deadline = time.monotonic() + START_TIMEOUT
        while not doorbell.ring(self.settings.data_path):
            code = self.child.exit_code()
            if code is not None:
                raise ConfigError(f"the BMC runner exited ({code}); see the messages above")
            if time.monotonic() >= deadline:
                self.stop()
                raise ConfigError(f"the BMC runner did not start within {START_TIMEOUT:g} s")
            time.sleep(0.05)
        self.child.watch()

    def stop(self) -> None:
        self.child.stop()


def _run(settings: Settings, parent_pid: int) -> None:
    die_with_parent(parent_pid)
    configure_logging(False)
    server = settings.server
    store = open_store(
        settings.data_path, server.events_per_machine, server.alerts_kept, settings.store
    )
    stop = threading.Event()

    def on_term(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    bell = Doorbell(settings.data_path)
    try:
        PowerRunner(power_service(settings, store)).serve(bell, stop)
    finally:
        bell.close()
        store.close()


def main() -> None:
    """The child's entry: `python -m mayu_py.cli.bmc_runner PARENT_PID`."""
    settings, parent_pid, _ = child_arguments()
    try:
        _run(settings, parent_pid)
    except MayuError as exc:
        print(f"mayu serve: {exc.message}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
