"""mayuctl's BMC commands: `bmc set|show|delete`, `power on|off|cycle|status`, `bootdev`,
and `reinstall` (through the BMC when the machine has one).

The BMC password is read from a file (`--password-file FILE`, `-` for stdin), never from the
command line, where every local user could read it in /proc. Power and boot-device commands
wait for the server's BMC runner to report the outcome (`--no-wait` returns once queued).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from mayu_py.cli.ctl_common import client_of, fmt_of, output_option
from mayu_py.cli.follow import FollowError, follow_action, follow_machine
from mayu_py.cli.output import emit, is_table

ACTION_TIMEOUT = 90.0
REINSTALL_TIMEOUT = 1800.0
_client = client_of
_fmt = fmt_of


def _read_password(path: str) -> str:
    """The password in FILE (or stdin for `-`), without its trailing newline."""
    try:
        text = click.get_text_stream("stdin").read() if path == "-" else Path(path).read_text()
    except OSError as exc:
        raise click.UsageError(f"--password-file {path}: {exc.strerror}") from None
    password = text.rstrip("\r\n")
    if not password:
        raise click.UsageError(f"--password-file {path}: empty")
    return password


@click.group("bmc")
def bmc() -> None:
    """A machine's BMC (Redfish or IPMI): where it is and how to log in."""


@bmc.command("set")
@click.argument("machine_id")
@click.option("--protocol", type=click.Choice(["redfish", "ipmi"]), required=True)
@click.option(
    "--address",
    required=True,
    help="Redfish: https://host[:port] (bare host[:port] means https). IPMI: host[:port].",
)
@click.option("--username", required=True)
@click.option(
    "--password-file",
    required=True,
    metavar="FILE",
    help="File holding the BMC password (`-`: read it from stdin).",
)
@click.option("--system-id", help="Redfish: the system's id when the BMC lists several.")
@click.option("--no-verify-tls", is_flag=True, help="Redfish over https: accept any certificate.")
@click.option("--ca-bundle", help="Redfish over https: verify against this CA file.")
@click.option(
    "--ipmi-cipher-suite",
    type=click.Choice(["3", "17"]),
    help="IPMI: 17 (negotiate, default) or 3 (SHA-1 only, e.g. virtualbmc).",
)
@output_option
@click.pass_context
def bmc_set(
    ctx: click.Context,
    machine_id: str,
    protocol: str,
    address: str,
    username: str,
    password_file: str,
    system_id: str | None,
    no_verify_tls: bool,
    ca_bundle: str | None,
    ipmi_cipher_suite: str | None,
    output: str | None,
) -> None:
    """Set a machine's BMC (also of a machine that never booted yet)."""
    body: dict[str, Any] = {
        "protocol": protocol,
        "address": address,
        "username": username,
        "password": _read_password(password_file),
    }
    if system_id:
        body["system_id"] = system_id
    if no_verify_tls:
        body["verify_tls"] = False
    if ca_bundle:
        body["ca_bundle"] = ca_bundle
    if ipmi_cipher_suite:
        body["ipmi_cipher_suite"] = int(ipmi_cipher_suite)
    emit(_client(ctx).set_bmc(machine_id, body), _fmt(ctx, output))


@bmc.command("show")
@click.argument("machine_id")
@output_option
@click.pass_context
def bmc_show(ctx: click.Context, machine_id: str, output: str | None) -> None:
    """Show a machine's BMC (never its password)."""
    emit(_client(ctx).request("GET", f"/api/v1/machines/{machine_id}/bmc"), _fmt(ctx, output))


@bmc.command("delete")
@click.argument("machine_id")
@click.pass_context
def bmc_delete(ctx: click.Context, machine_id: str) -> None:
    """Forget a machine's BMC."""
    _client(ctx).call("DELETE", f"/api/v1/machines/{machine_id}/bmc")
    click.echo(f"{machine_id}: BMC removed")


def _report(ctx: click.Context, action: dict[str, Any], output: str | None) -> None:
    """Print a finished (or, with --no-wait, queued) action."""
    fmt = _fmt(ctx, output)
    if not is_table(fmt):
        emit(action, fmt)
        return
    who, state = action["machine_id"], action["state"]
    if state != "done":
        click.echo(f"{who}: {action['action']} {state} (action {action['id']})")
        return
    result = action["result"]
    took = f"{action['finished'] - action['requested']:.2f} s after the request"
    if action["action"] == "power-status":
        click.echo(f"{who}: {result['state']}")
    elif "power_seconds" in result:
        click.echo(f"{who}: {action['action']} acknowledged, machine {result['state']} ({took})")
    else:
        click.echo(f"{who}: boot device {result['device']} ({took})")


def _wait_options(fn: Any) -> Any:
    fn = click.option("--no-wait", is_flag=True, help="Return once the action is queued.")(fn)
    fn = click.option(
        "--timeout",
        type=click.FloatRange(min=1),
        default=ACTION_TIMEOUT,
        show_default=True,
        help="Seconds to wait for the BMC's answer.",
    )(fn)
    return output_option(fn)


@click.command("power")
@click.argument("action", type=click.Choice(["on", "off", "cycle", "status"]))
@click.argument("machine_id")
@_wait_options
@click.pass_context
def power(
    ctx: click.Context,
    action: str,
    machine_id: str,
    no_wait: bool,
    timeout: float,
    output: str | None,
) -> None:
    """Power a machine on, off, cycle it (off and on; on when off), or read its power state."""
    queued = _client(ctx).power(machine_id, action)
    _report(ctx, queued if no_wait else follow_action(_client(ctx), queued, timeout), output)


@click.command("bootdev")
@click.argument("machine_id")
@click.argument("device", type=click.Choice(["pxe", "disk"]))
@_wait_options
@click.pass_context
def bootdev(
    ctx: click.Context,
    machine_id: str,
    device: str,
    no_wait: bool,
    timeout: float,
    output: str | None,
) -> None:
    """Set the device a machine boots from (kept for every later boot)."""
    queued = _client(ctx).boot_device(machine_id, device)
    _report(ctx, queued if no_wait else follow_action(_client(ctx), queued, timeout), output)


@click.command("reinstall")
@click.argument("machine_id")
@click.option("--wait", is_flag=True, help="Follow the machine until it runs again.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=REINSTALL_TIMEOUT,
    show_default=True,
    help="Seconds --wait follows the machine.",
)
@click.pass_context
def reinstall(ctx: click.Context, machine_id: str, wait: bool, timeout: float) -> None:
    """Provision a machine again. With a BMC: next boot PXE and a power cycle now (the disk
    comes back once it installed); without one, power-cycle it by hand."""
    client = _client(ctx)
    events = client.events(machine_id)
    last_seq = max((e["seq"] or 0 for e in events), default=0)
    answer = client.reinstall(machine_id)
    who = answer["id"]
    click.echo(f"{who}: {answer['state']}; {answer['next']}")
    if answer["action"] is not None:
        try:
            done = follow_action(client, answer["action"], ACTION_TIMEOUT)
        except FollowError as exc:
            raise FollowError(
                f"{exc.message}; the reinstall is recorded ({who} provisions at its next "
                f"network boot): fix the BMC and run `mayuctl reinstall {who}` again, or "
                "power-cycle the machine by hand"
            ) from None
        state = done["result"]["state"]
        click.echo(f"{who}: boot device pxe, power cycle acknowledged (machine {state})")
    if wait:
        machine = follow_machine(client, who, last_seq, timeout)
        click.echo(f"{who}: {machine['state']}")
