"""`mayuctl`: the operator's client of the admin API (reads MAYU_URL and MAYU_TOKEN)."""

from __future__ import annotations

import json
from typing import Any

import click
import yaml

from mayu_py.api_client import AdminClient
from mayu_py.cli import mayuctl_power, mayuctl_users
from mayu_py.cli.ctl_common import OUTPUT, client_of, fmt_of, output_option
from mayu_py.cli.entry import run
from mayu_py.cli.output import emit, is_table, rfc3339_times, with_local_times
from mayu_py.cli.watch import watch_machines

MACHINE_COLUMNS = ["id", "hostname", "state", "ip", "profile", "labels", "age"]
MACHINE_WIDE = ["uuid", "serial", "created", "updated", "window_expires"]
EVENT_COLUMNS = ["seq", "time", "kind", "from", "to", "source", "cause", "details"]
TENANT_COLUMNS = ["name", "phase", "masters", "workers", "generation"]
NODE_COLUMNS = ["name", "role", "host", "state", "reason", "ip"]
CONDITION_COLUMNS = ["object", "type", "status", "reason", "since", "message"]

DEFAULT_URL = "http://127.0.0.1:8080"
_fmt = fmt_of
_client = client_of


@click.group()
@click.option("-o", "--output", type=OUTPUT, default="table", show_default=True)
@click.option("--url", envvar="MAYU_URL", help="Server URL (env MAYU_URL).")
@click.option(
    "--token",
    envvar="MAYU_TOKEN",
    help="Your user token, or the shared admin token (env MAYU_TOKEN).",
)
@click.option(
    "--ca-file",
    envvar="MAYU_CA_FILE",
    type=click.Path(dir_okay=False, exists=True),
    help="CA to verify an https:// server with (env MAYU_CA_FILE; the server's own CA is "
    "<data-dir>/pki/server/ca.crt).",
)
@click.pass_context
def cli(
    ctx: click.Context, output: str, url: str | None, token: str | None, ca_file: str | None
) -> None:
    """Operate a mayu server: machines, their states and tenant clusters.

    Exit codes: 0 done, 1 the server or the operation failed, 2 usage or bad input (a 4xx).
    Shell completion: eval "$(_MAYUCTL_COMPLETE=bash_source mayuctl)" (zsh_source, fish_source).
    """
    client = AdminClient(url or DEFAULT_URL, token or "", ca_file=ca_file)
    ctx.obj = {"output": output, "client": client}


for _command in (
    mayuctl_power.bmc,
    mayuctl_power.power,
    mayuctl_power.bootdev,
    mayuctl_power.reinstall,
    mayuctl_users.users,
):
    cli.add_command(_command)


@cli.command("list")
@click.option("--state", help="Only machines in this state.")
@click.option(
    "-l", "--selector", help="Label selector: k=v, k!=v, k (has it), !k (has not); all hold."
)
@click.option("--limit", type=click.IntRange(1, 10_000), help="At most this many machines.")
@click.option("--continue", "continue_", metavar="TOKEN", help="The next page after --limit.")
@click.option("-w", "--watch", is_flag=True, help="Then print machines again as they change.")
@click.option(
    "--watch-timeout",
    type=click.FloatRange(min=0.1),
    default=600.0,
    show_default=True,
    help="Stop watching after this many seconds.",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=1.0,
    show_default=True,
    help="Seconds between two polls of a watch (unchanged answers are 304s).",
)
@output_option
@click.pass_context
def list_machines(
    ctx: click.Context,
    state: str | None,
    selector: str | None,
    limit: int | None,
    continue_: str | None,
    watch: bool,
    watch_timeout: float,
    interval: float,
    output: str | None,
) -> None:
    """List machines: by state and label selector, a page at a time, or watched.

    A page's next one is named on stderr (`--continue TOKEN`); with -o json or yaml a paged
    listing is the API's page, `{"items": [...], "continue": TOKEN}`."""
    fmt = _fmt(ctx, output)
    query = {"state": state, "selector": selector, "continue": continue_}
    query |= {"limit": str(limit)} if limit else {}
    query = {k: v for k, v in query.items() if v}
    client = _client(ctx)
    if watch:
        if limit or continue_:
            raise click.UsageError("--watch shows every machine: no --limit or --continue")
        for round_, changed in enumerate(watch_machines(client, query, watch_timeout, interval)):
            emit_stream(changed, fmt, round_ == 0)
        return
    page, _etag = client.machine_page(query)
    assert page is not None  # no If-None-Match was sent: never a 304
    token = page.get("continue")
    if token:
        click.echo(f"more machines: --continue {token}", err=True)
    paged = (limit or continue_) and fmt in ("json", "yaml")
    emit(page if paged else page["items"], fmt, MACHINE_COLUMNS, MACHINE_WIDE)


def emit_stream(items: list[dict[str, Any]], fmt: str, first: bool) -> None:
    """A watch's next machines: table rows (a header first), JSON lines or YAML documents."""
    if is_table(fmt):
        if items or first:
            emit(items, fmt, MACHINE_COLUMNS, MACHINE_WIDE, header=first)
        return
    for item in items:
        if fmt == "json":
            click.echo(json.dumps(rfc3339_times(item), sort_keys=True))
        elif fmt == "yaml":
            click.echo("---")
            emit(item, fmt)
        else:
            emit(item, fmt)


@cli.command("show")
@click.argument("machine_id")
@output_option
@click.pass_context
def show(ctx: click.Context, machine_id: str, output: str | None) -> None:
    """Show one machine (by MAC) with its event history."""
    machine = _client(ctx).machine(machine_id)
    fmt = _fmt(ctx, output)
    if not is_table(fmt):
        emit(machine, fmt)
        return
    events = machine.pop("events")
    emit(machine, fmt)
    click.echo()
    emit(with_local_times(events), fmt, EVENT_COLUMNS)


@cli.command("set")
@click.argument("machine_id")
@click.argument("key")
@click.argument("value")
@output_option
@click.pass_context
def set_value(
    ctx: click.Context, machine_id: str, key: str, value: str, output: str | None
) -> None:
    """Set hostname, state or a label (e.g. `role worker`) of a machine."""
    machine = _client(ctx).request("PATCH", f"/api/v1/machines/{machine_id}", json={key: value})
    emit(machine, _fmt(ctx, output))


@cli.command("approve")
@click.argument("machine_id")
@click.option(
    "--role", type=click.Choice(["worker", "controller"]), required=True, help="The role."
)
@click.option("--label", "labels", multiple=True, metavar="K=V", help="A label (repeatable).")
@output_option
@click.pass_context
def approve(
    ctx: click.Context, machine_id: str, role: str, labels: tuple[str, ...], output: str | None
) -> None:
    """Approve a discovered machine: it provisions at its next network boot."""
    parsed = {}
    for label in labels:
        key, sep, value = label.partition("=")
        if not sep or not key:
            raise click.UsageError(f"--label {label!r}: expected KEY=VALUE")
        parsed[key] = value
    machine = _client(ctx).request(
        "POST", f"/api/v1/machines/{machine_id}/approve", json={"role": role, "labels": parsed}
    )
    emit(machine, _fmt(ctx, output))


@cli.command("events")
@click.argument("machine_id")
@output_option
@click.pass_context
def events(ctx: click.Context, machine_id: str, output: str | None) -> None:
    """A machine's events: time, event, source, detail."""
    items = _client(ctx).events(machine_id)
    fmt = _fmt(ctx, output)
    emit(with_local_times(items) if is_table(fmt) else items, fmt, EVENT_COLUMNS)


@cli.command("delete")
@click.argument("machine_id")
@output_option
@click.pass_context
def delete(ctx: click.Context, machine_id: str, output: str | None) -> None:
    """Forget a machine and its events; revoke its credentials, agent token, certificates."""
    machine = _client(ctx).request("DELETE", f"/api/v1/machines/{machine_id}")
    fmt = _fmt(ctx, output)
    if not is_table(fmt):
        emit(machine, fmt)
        return
    revoked = machine["revoked"]
    what = [
        *(["report credential"] if revoked["report_credential"] else []),
        *(["agent token"] if revoked["agent_token"] else []),
        f"{len(revoked['certificates'])} certificate(s)",
    ]
    click.echo(f"{machine['id']} deleted (revoked: {', '.join(what)})")


@cli.command("label")
@click.argument("machine_id")
@click.argument("changes", nargs=-1, required=True, metavar="KEY=VALUE|KEY-...")
@output_option
@click.pass_context
def label(
    ctx: click.Context, machine_id: str, changes: tuple[str, ...], output: str | None
) -> None:
    """Set labels (`rack=r1`) and remove them (`rack-`) in one change, all or nothing."""
    patch: dict[str, str | None] = {}
    for change in changes:
        key, sep, value = change.partition("=")
        if sep and key:
            patch[key] = value
        elif not sep and len(change) > 1 and change.endswith("-"):
            patch[change[:-1]] = None
        else:
            raise click.UsageError(f"{change!r}: expected KEY=VALUE or KEY-")
    machine = _client(ctx).request("PATCH", f"/api/v1/machines/{machine_id}", json=patch)
    emit(machine, _fmt(ctx, output))


@cli.command("boot-complete")
@click.argument("machine_id")
@output_option
@click.pass_context
def boot_complete(ctx: click.Context, machine_id: str, output: str | None) -> None:
    """Mark an installed machine as running."""
    machine = _client(ctx).request("POST", f"/api/v1/machines/{machine_id}/boot-complete")
    emit(machine, _fmt(ctx, output))


@cli.command("kubeconfig")
@click.pass_context
def kubeconfig(ctx: click.Context) -> None:
    """Print the admin kubeconfig of the host cluster."""
    click.echo(_client(ctx).request("GET", "/api/v1/kubeconfig"), nl=False)


@cli.group()
def hosts() -> None:
    """Agent hosts: approve, revoke, rotate their tokens."""


HOST_COLUMNS = ["name", "cpus", "memory_mib", "address", "underlay", "alive", "credential"]
HOST_WIDE = ["images"]


@hosts.command("list")
@output_option
@click.pass_context
def hosts_list(ctx: click.Context, output: str | None) -> None:
    """Hosts with their capacity, last heartbeat and credential (wide: their base images)."""
    items = _client(ctx).request("GET", "/api/v1/hosts")["items"]
    fmt = _fmt(ctx, output)
    if is_table(fmt):
        for item in items:
            credential = item.get("credential") or {}
            item["credential"] = (
                "revoked" if credential.get("revoked") else credential.get("origin", "none")
            )
            images = item.get("images")  # None: an agent that does not tell its images
            item["images"] = None if images is None else [i["name"] for i in images]
    emit(items, fmt, HOST_COLUMNS, HOST_WIDE)


def _host_token(
    ctx: click.Context, host: str, action: str, body: dict[str, str] | None = None
) -> None:
    answer = _client(ctx).request("POST", f"/api/v1/hosts/{host}/{action}", json=body)
    click.echo(f"agent token of {host} (shown once; give it to its agent with --token-file):")
    click.echo(answer["token"])


@hosts.command("approve")
@click.argument("host")
@click.option(
    "--underlay",
    default="",
    help="The host's VXLAN endpoint address: other hosts accept its tenants' tunnels only "
    "from this address (without it, from none).",
)
@click.pass_context
def hosts_approve(ctx: click.Context, host: str, underlay: str) -> None:
    """Approve an agent host that is not an enrolled machine; prints its token once."""
    _host_token(ctx, host, "approve", {"underlay": underlay} if underlay else None)


@hosts.command("rotate-token")
@click.argument("host")
@click.pass_context
def hosts_rotate(ctx: click.Context, host: str) -> None:
    """Give a host a new agent token (the old one stops working); prints it once."""
    _host_token(ctx, host, "rotate-token")


@hosts.command("revoke")
@click.argument("host")
@click.pass_context
def hosts_revoke(ctx: click.Context, host: str) -> None:
    """Revoke a host's agent token; its tenant nodes are placed on other hosts."""
    _client(ctx).request("POST", f"/api/v1/hosts/{host}/revoke")
    click.echo(f"host {host} revoked; its tenant nodes move to other hosts")


@cli.group()
def tenants() -> None:
    """Tenant clusters (TenantCluster objects)."""


def _tenant_row(doc: dict[str, Any]) -> dict[str, Any]:
    spec, status = doc.get("spec", {}), doc.get("status", {})
    return {
        "name": doc["metadata"]["name"],
        "phase": status.get("phase"),
        "masters": len(spec.get("masters", [])),
        "workers": len(spec.get("workers", [])),
        "generation": doc["metadata"].get("generation"),
    }


@tenants.command("list")
@output_option
@click.pass_context
def tenants_list(ctx: click.Context, output: str | None) -> None:
    """List tenant clusters."""
    items = _client(ctx).tenants()
    fmt = _fmt(ctx, output)
    emit([_tenant_row(d) for d in items] if is_table(fmt) else items, fmt, TENANT_COLUMNS)


@tenants.command("show")
@click.argument("name")
@output_option
@click.pass_context
def tenants_show(ctx: click.Context, name: str, output: str | None) -> None:
    """Show a tenant cluster with its nodes."""
    doc = _client(ctx).tenant(name)
    fmt = _fmt(ctx, output)
    if not is_table(fmt):
        emit(doc, fmt)
        return
    emit(_tenant_row(doc), fmt)
    rollout = doc.get("status", {}).get("rollout")
    if rollout:
        note = f": {rollout['message']}" if rollout.get("message") else ""
        click.echo(
            f"\nrollout to generation {rollout['revision']}: {rollout['done']}/{rollout['total']}"
            f" nodes replaced; {rollout.get('node')} {rollout['step']}{note}"
        )
    click.echo()
    nodes = doc.get("status", {}).get("nodes", [])
    emit([_node_row(n) for n in nodes], fmt, NODE_COLUMNS)
    click.echo()
    emit(_condition_rows(doc), fmt, CONDITION_COLUMNS)


def _ready_reason(node: dict[str, Any]) -> str | None:
    """The reason of a node's Ready condition (why it is, or is not, ready)."""
    found = [c for c in node.get("conditions") or [] if c.get("type") == "Ready"]
    return found[0].get("reason") if found else None


def _node_row(node: dict[str, Any]) -> dict[str, Any]:
    return node | {"reason": _ready_reason(node)}


def _condition_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The tenant's conditions, then each node's: what, type, status, reason, since, why."""
    status = doc.get("status") or {}
    owners = [(f"tenant/{doc['metadata']['name']}", status)]
    owners += [(f"node/{n.get('name')}", n) for n in status.get("nodes") or []]
    return [
        {"object": owner, **condition, "since": condition.get("lastTransitionTime")}
        for owner, holder in owners
        for condition in holder.get("conditions") or []
    ]


@tenants.command("create")
@click.option(
    "-f", "--file", "path", required=True, type=click.File("r"), help="TenantCluster YAML."
)
@output_option
@click.pass_context
def tenants_create(ctx: click.Context, path: Any, output: str | None) -> None:
    """Create a tenant cluster from a TenantCluster YAML file."""
    try:
        doc = yaml.safe_load(path)
    except yaml.YAMLError as exc:
        raise click.UsageError(f"{path.name}: invalid YAML: {exc}") from exc
    created = _client(ctx).create_tenant(doc)
    emit(_tenant_row(created), _fmt(ctx, output))


@tenants.command("scale")
@click.argument("name")
@click.option("--workers", type=click.IntRange(min=0), required=True, help="Desired workers.")
@output_option
@click.pass_context
def tenants_scale(ctx: click.Context, name: str, workers: int, output: str | None) -> None:
    """Scale a tenant cluster's workers (new ones are sized like the last worker)."""
    client = _client(ctx)
    spec = client.tenant(name)["spec"]
    current = spec.get("workers", [])
    template = (current or spec["masters"])[-1]
    wanted = current[:workers] + [template] * max(0, workers - len(current))
    doc = client.patch_tenant_spec(name, {"workers": wanted})
    emit(_tenant_row(doc), _fmt(ctx, output))


@tenants.command("kubeconfig")
@click.argument("name")
@click.pass_context
def tenants_kubeconfig(ctx: click.Context, name: str) -> None:
    """Print a tenant's admin kubeconfig (its API at <name>.api.<ingress domain> when the
    server has tenants.ingress_domain; keep it secret: it holds a client key)."""
    click.echo(_client(ctx).request("GET", f"/api/v1/tenants/{name}/kubeconfig"), nl=False)


@tenants.command("delete")
@click.argument("name")
@click.pass_context
def tenants_delete(ctx: click.Context, name: str) -> None:
    """Delete a tenant cluster (its VMs, disks, network and secrets go with it)."""
    _client(ctx).delete_tenant(name)
    click.echo(f"tenant {name} deleting")


def main() -> None:
    """Console entry point."""
    run(cli, "mayuctl")
