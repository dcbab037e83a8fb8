"""Following what the server does after mayuctl asked: a BMC action until it finished, and
a machine through its reinstall until it runs, with a live progress display.

A BMC action is polled every `ACTION_POLL` s (the API answers at once; the runner takes 0.01
to ~13 s). A machine is polled every `MACHINE_POLL` s; each new event is printed as one
line (time, event, source, cause) above a spinner naming the state and the time spent.
Failures and timeouts raise `FollowError`: one line, exit 1 (a runtime error).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.markup import escape

from mayu_py.api_client import AdminClient
from mayu_py.cli.output import local_time
from mayu_py.errors import MayuError

ACTION_POLL = 0.1
MACHINE_POLL = 1.0
FINISHED = ("done", "failed")
WAITING = {
    "configured": "waiting for the machine's network boot",
    "installing": "installing",
    "installed": "installed, waiting for it to boot from its disk and report running",
}


class FollowError(MayuError):
    """The followed action failed, the machine failed, or the wait timed out."""


def follow_action(
    client: AdminClient,
    action: dict[str, Any],
    timeout: float,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Poll a BMC action until done (returned) or failed (FollowError with its one line)."""
    deadline = time.monotonic() + timeout
    while action["state"] not in FINISHED:
        if time.monotonic() > deadline:
            raise FollowError(
                f"{action['machine_id']}: {action['action']} still {action['state']} after "
                f"{timeout:g} s (follow it: GET /api/v1/actions/{action['id']})"
            )
        sleep(ACTION_POLL)
        action = client.action(action["id"])
    if action["state"] == "failed":
        raise FollowError(f"{action['machine_id']}: {action['error']}", action)
    return action


def event_line(event: dict[str, Any]) -> str:
    """One event on one line: time, kind, cause, the state change, source."""
    moved = f" ({event['from']} -> {event['to']})" if event["from"] != event["to"] else ""
    return (
        f"{local_time(event['time'])}  {event['kind']:<22} {event['cause']}{moved}  "
        f"[{event['source']}]"
    )


def follow_machine(
    client: AdminClient,
    machine_id: str,
    after_seq: int,
    timeout: float,
    console: Console | None = None,
) -> dict[str, Any]:
    """Print the machine's events after `after_seq` until it is `running` (returned);
    FollowError when it fails or `timeout` passes first."""
    console = console or Console(highlight=False, soft_wrap=True)
    start = time.monotonic()
    seen = after_seq
    machine: dict[str, Any] = {}
    with console.status("") as status:
        while True:
            machine = client.machine(machine_id)
            for event in machine["events"]:
                if (event["seq"] or 0) > seen:
                    seen = event["seq"]
                    console.print(escape(event_line(event)))
            state = machine["state"]
            if state == "running":
                return machine
            if state == "failed":
                last = machine["events"][-1]["cause"] if machine["events"] else "no event"
                raise FollowError(f"{machine['id']}: failed ({last})")
            spent = time.monotonic() - start
            if spent > timeout:
                raise FollowError(
                    f"{machine['id']}: still {state} after {timeout:g} s "
                    f"(follow it with `mayuctl events {machine['id']}`)"
                )
            status.update(f"{machine['id']}: {state}, {WAITING.get(state, state)} ({spent:.0f} s)")
            time.sleep(MACHINE_POLL)
