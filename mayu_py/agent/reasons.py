"""Why an action failed, as a node condition's reason and one-line message.

A reason is one CamelCase word an operator can alert on (`BaseImageMissing`, `DefineFailed`,
...); the message says what happened in one line and, where there is one, the command that
fixes it.
"""

from __future__ import annotations

from mayu_py.agent import plan as p
from mayu_py.errors import MayuError
from mayu_py.images.base import ImageCorrupt, ImageMissing
from mayu_py.tenants.wire import MAX_MESSAGE

_BY_ACTION: dict[type[p.Action], str] = {
    p.EnsureFilter: "FilterFailed",
    p.DeleteFilter: "FilterFailed",
    p.CreateNetwork: "NetworkFailed",
    p.RecreateNetwork: "NetworkFailed",
    p.StartNetwork: "NetworkFailed",
    p.UpdateNetworkHosts: "NetworkFailed",
    p.DeleteNetwork: "NetworkFailed",
    p.DrainNode: "DrainFailed",
    p.DeleteDomain: "DeleteFailed",
    p.StartDomain: "StartFailed",
    p.CreateOverlay: "DiskFailed",
    p.WriteIgnition: "IgnitionFailed",
    p.DefineDomain: "DefineFailed",
    p.Blocked: "NameConflict",
    p.DeleteFiles: "CleanupFailed",
    p.DeleteTenantDir: "CleanupFailed",
}
BOOT_FAILED = "BootFailed"


def one_line(text: str) -> str:
    """The first non-blank line of `text`, cut to what a report carries."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (lines[0] if lines else "")[:MAX_MESSAGE]


def failure(action: p.Action, exc: MayuError, host: str) -> tuple[str, str]:
    """The reason and message of `action` failing with `exc` on `host`."""
    if isinstance(exc, ImageMissing):
        name = exc.image
        if name == "lab":
            fix = (
                f"run `mayu images build-lab --tenant-images DIR` on {host} "
                "(DIR: its agent's --images-dir)"
            )
        else:
            fix = f"run `mayu images fetch {name}` and install it into the --images-dir of {host}"
        return "BaseImageMissing", f"base image `{name}` is not present on host `{host}`: {fix}"
    if isinstance(exc, ImageCorrupt):
        return "BaseImageCorrupt", one_line(f"on host {host}: {exc.message}")
    return _BY_ACTION.get(type(action), "ActionFailed"), one_line(exc.message)
