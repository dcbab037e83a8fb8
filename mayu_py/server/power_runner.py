"""The BMC runner: runs queued BMC actions, outside the processes that serve HTTP.

`mayu serve` starts it as a process of its own (cli/bmc_runner.py), so a BMC that takes 10 s
to answer ties up one of the runner's threads, never a gunicorn worker serving /ipxe. The
queue is the store: the runner claims queued actions in a transaction (at most one running
action per machine, at most `threads` at once), runs each on its own thread, and records
the outcome: the action's state, result or one-line error, and one event per step
(`power-acknowledged`, `bootdev-failed`, ...; a status read records none).

Bounds: an action still queued after `queued_timeout` seconds fails instead of acting late
(an operator's "power off" must not land minutes later); an action found running when the
runner starts was cut off by a runner that died: it fails as interrupted, its outcome unknown.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from mayu_py.bmc.base import Bmc, PowerAction, PowerResult
from mayu_py.bmc.client import connect
from mayu_py.bmc.coordinates import BmcCoordinates
from mayu_py.bmc.errors import BmcError
from mayu_py.bmc.records import ActionState, BmcAction, Step
from mayu_py.errors import MayuError
from mayu_py.model import Event
from mayu_py.server.doorbell import Doorbell
from mayu_py.server.power import PowerService
from mayu_py.store import Tx

log = logging.getLogger(__name__)

THREADS = 8
QUEUED_TIMEOUT = 60.0
POLL_SECONDS = 1.0
OPEN_SCAN = 200
RUNNER = "bmc-runner"  # the source of outcomes the runner itself decides


class StepFailed(MayuError):
    """A step's one-line error with the kind of BMC error behind it."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


class PowerRunner:
    """Claims and runs BMC actions; `serve` loops, `run_pending` drains once (tests)."""

    def __init__(
        self,
        power: PowerService,
        connect: Callable[[BmcCoordinates], Bmc] = connect,
        *,
        threads: int = THREADS,
        queued_timeout: float = QUEUED_TIMEOUT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.power = power
        self.store = power.store
        self.connect = connect
        self.threads = threads
        self.queued_timeout = queued_timeout
        self.clock = clock
        self._busy: set[int] = set()
        self._lock = threading.Lock()

    # -- the loop ---------------------------------------------------------------------------

    def serve(self, bell: Doorbell, stop: threading.Event) -> None:
        """Run actions until `stop` is set; woken by the doorbell, else every POLL_SECONDS."""
        self.recover()
        with ThreadPoolExecutor(self.threads, thread_name_prefix="bmc") as pool:
            while not stop.is_set():
                for action in self.claim(self._free()):
                    with self._lock:
                        self._busy.add(action.id or 0)
                    future = pool.submit(self.execute, action)
                    future.add_done_callback(lambda _f, aid=action.id: self._done(aid, bell))
                bell.wait(POLL_SECONDS)

    def run_pending(self) -> list[BmcAction]:
        """Claim and run every action that can run now, in this thread; their outcomes."""
        done: list[BmcAction] = []
        while claimed := self.claim(self.threads):
            done += [self.execute(action) for action in claimed]
        return done

    def _free(self) -> int:
        with self._lock:
            return self.threads - len(self._busy)

    def _done(self, action_id: int | None, bell: Doorbell) -> None:
        with self._lock:
            self._busy.discard(action_id or 0)
        bell.ring()  # a thread is free and the machine may have more queued

    # -- claiming ---------------------------------------------------------------------------

    def recover(self) -> None:
        """Fail actions a dead runner left running: whether the BMC acted is unknown."""

        def txn(tx: Tx) -> None:
            now = self.clock()
            for action in tx.open_actions(OPEN_SCAN):
                if action.state is ActionState.RUNNING:
                    why = (
                        f"{action.steps[0].words}: interrupted, the BMC runner stopped during "
                        "the action; outcome unknown"
                    )
                    self._fail(tx, action, action.steps[0], why, "interrupted", now)

        self.store.atomically(txn)

    def claim(self, limit: int) -> list[BmcAction]:
        """Mark up to `limit` queued actions running (none of a machine that has one running)
        and return them; queued ones that waited too long fail."""
        if limit <= 0:
            return []

        def txn(tx: Tx) -> list[BmcAction]:
            now = self.clock()
            opened = tx.open_actions(OPEN_SCAN)
            running = {a.machine_id for a in opened if a.state is ActionState.RUNNING}
            claimed: list[BmcAction] = []
            for action in opened:
                if action.state is not ActionState.QUEUED:
                    continue
                if now - action.requested > self.queued_timeout:
                    why = (
                        f"{action.steps[0].words}: not started within "
                        f"{self.queued_timeout:g} s (is the BMC runner up?)"
                    )
                    self._fail(tx, action, action.steps[0], why, "expired", now)
                    continue
                if action.machine_id in running or len(claimed) >= limit:
                    continue
                running.add(action.machine_id)
                started = replace(action, state=ActionState.RUNNING, started=now)
                tx.update_action(started)
                claimed.append(started)
            return claimed

        return self.store.atomically(txn)

    # -- running one action -----------------------------------------------------------------

    def execute(self, action: BmcAction) -> BmcAction:
        """Run a claimed action's steps in order; record each outcome. Never raises."""
        try:
            bmc = self._bmc(action)
        except StepFailed as exc:
            return self._finish_failed(action, action.steps[0], exc, {}, RUNNER)
        source = f"bmc {bmc.coordinates.label}"
        result: dict[str, Any] = {}
        for step in action.steps:
            try:
                outcome = self._call(bmc, step)
            except StepFailed as exc:
                return self._finish_failed(action, step, exc, result, source)
            result.update(outcome)
            self._record_step(action, step, outcome, source)
        return self._finish(replace(action, state=ActionState.DONE, result=result))

    def _bmc(self, action: BmcAction) -> Bmc:
        stored = self.store.get_bmc(action.machine_id)
        if stored is None:
            raise StepFailed(f"{action.steps[0].words}: no BMC configured anymore", "no-bmc")
        try:
            return self.connect(self.power.coordinates(stored))
        except MayuError as exc:  # a sealed password that does not open, bad coordinates
            raise StepFailed(f"{action.steps[0].words}: {exc.message}", "config") from None

    @staticmethod
    def _call(bmc: Bmc, step: Step) -> dict[str, Any]:
        """One BMC call; its result as JSON-able facts. StepFailed with the one-line error."""
        try:
            if step.family == "status":
                return {"state": str(bmc.power_status())}
            if step.device is not None:
                booted = bmc.set_boot_device(step.device)
                return {"device": str(booted.device), "persistent": booted.persistent,
                        "bootdev_seconds": round(booted.seconds, 3)}  # fmt: skip
            act: dict[PowerAction | None, Callable[[], PowerResult]] = {
                PowerAction.ON: bmc.power_on,
                PowerAction.OFF: bmc.power_off,
                PowerAction.CYCLE: bmc.power_cycle,
            }
            acted = act[step.power]()
            return {"state": str(acted.state), "power_seconds": round(acted.seconds, 3)}
        except BmcError as exc:
            raise StepFailed(exc.message, exc.kind) from None
        except Exception as exc:  # a bug must not leave the action running forever
            log.exception("BMC call %s failed unexpectedly", step.words)
            raise StepFailed(
                f"{step.words}: internal error ({type(exc).__name__})", "internal"
            ) from None

    def _record_step(
        self, action: BmcAction, step: Step, outcome: dict[str, Any], source: str
    ) -> None:
        if not step.recorded:
            return
        seconds = outcome.get("power_seconds", outcome.get("bootdev_seconds"))
        said = f"machine {outcome['state']}" if "state" in outcome else "persistent"
        event = Event(
            action.machine_id,
            self.clock(),
            f"{step.family}-acknowledged",
            f"{step.words} acknowledged: {said} ({seconds:.2f} s)",
            source,
            details={"action_id": action.id, "action": str(action.kind), **outcome},
        )
        self.store.atomically(lambda tx: tx.add_event(event))
        log.info("%s: %s", action.machine_id, event.cause)

    def _finish_failed(
        self,
        action: BmcAction,
        step: Step,
        exc: StepFailed,
        result: dict[str, Any],
        source: str,
    ) -> BmcAction:
        def txn(tx: Tx) -> BmcAction:
            failed = replace(action, result=result)
            return self._fail(tx, failed, step, exc.message, exc.kind, self.clock(), source)

        done = self.store.atomically(txn)
        log.warning("%s: %s failed: %s", action.machine_id, step.words, exc.message)
        return done

    def _finish(self, action: BmcAction) -> BmcAction:
        done = replace(action, finished=self.clock())
        self.store.atomically(lambda tx: tx.update_action(done))
        return done

    @staticmethod
    def _fail(
        tx: Tx,
        action: BmcAction,
        step: Step,
        why: str,
        kind: str,
        now: float,
        source: str = RUNNER,
    ) -> BmcAction:
        """Record a failed action: its state, and a `<family>-failed` event for the step.
        `why` is one line naming the step (a BmcError's message does)."""
        left = action.steps[action.steps.index(step) + 1 :]
        skipped = f"; not done: {', '.join(s.words for s in left)}" if left else ""
        failed = replace(
            action,
            state=ActionState.FAILED,
            finished=now,
            error=f"{why}{skipped}",
            error_kind=kind,
        )
        tx.update_action(failed)
        if step.recorded:
            tx.add_event(
                Event(
                    action.machine_id,
                    now,
                    f"{step.family}-failed",
                    failed.error or "",
                    source,
                    details={"action_id": action.id, "action": str(action.kind), "kind": kind},
                )
            )
        return failed
