"""The iPXE scripts of the boot plane: the generic entry script and one per boot answer
(install, boot the local disk, wait). Plain text, built from validated values only."""

from __future__ import annotations

import posixpath

from mayu_py.config import InstallConfig, Profile
from mayu_py.model import Machine

# iPXE's ${platform} on UEFI; anything else (pcbios) boots the disk with sanboot.
UEFI_PLATFORM = "efi"
GIVE_UP_AFTER_TRIES = 60


def url_mac(mac: str) -> str:
    """The MAC as iPXE's ${net0/mac:hexhyp} writes it: safe inside a URL."""
    return mac.replace(":", "-")


def boot_script(base_url: str) -> str:
    """The generic script every machine gets first: chains to /ipxe with its identity.

    A chained script that returns success (local boot on UEFI) ends iPXE, so the firmware
    boots the next device; one that fails after setting `mayu_wait` (not approved yet, or
    installing elsewhere) is asked again at once (it has slept); any other failure (server
    down) is retried every 5 s and after GIVE_UP_AFTER_TRIES the machine reboots."""
    identity = "mac=${net0/mac:hexhyp}&uuid=${uuid}&arch=${buildarch}&platform=${platform}"
    return f"""#!ipxe
set tries:int32 0
:retry
inc tries
clear mayu_wait
chain --autofree {base_url}/ipxe?{identity}&serial=${{serial}} && exit ||
isset ${{mayu_wait}} && goto retry ||
echo mayu: no boot script yet (try ${{tries}}), retrying in 5 s
iseq ${{tries}} {GIVE_UP_AFTER_TRIES} && goto giveup ||
sleep 5
goto retry
:giveup
echo mayu: giving up, rebooting
reboot
"""


def install_script(
    profile: Profile, machine: Machine, token: str, base_url: str, asset_url: str
) -> str:
    """The installer: kernel with the Ignition and phone-home URLs (boot token), initrds."""
    query = f"mac={url_mac(machine.mac)}&token={token}"
    initrd_names = [posixpath.basename(path) for path in profile.initrd]
    args = [
        *(f"initrd={name}" for name in initrd_names),
        *profile.args,
        *config_args(
            profile.install, f"{base_url}/ignition?{query}", f"{base_url}/report?{query}", asset_url
        ),
    ]
    lines = ["#!ipxe", f"echo mayu: installing {machine.node_name} ({machine.mac})"]
    lines.append(f"kernel {asset_url}/{profile.kernel} {' '.join(args)}")
    lines.extend(f"initrd {asset_url}/{path}" for path in profile.initrd)
    lines.append("boot")
    return "\n".join(lines) + "\n"


def config_args(
    install: InstallConfig | None, stub_url: str, report_url: str, asset_url: str
) -> list[str]:
    """Kernel arguments naming the machine's Ignition stub, where it reports and, for an
    install to disk, what the OS's installer writes where.

    Fedora CoreOS: the live system's coreos-installer reads `coreos.inst.install_dev` and
    `coreos.inst.ignition_url` (https://coreos.github.io/coreos-installer/getting-started/,
    "Kernel command line options for coreos-installer running as a service"; it fetches an
    http:// URL with `--insecure-ignition`) and embeds what it fetched in the installed
    system. That must be the stub, and the live system must not run Ignition on it: the
    installed system's first boot merges the real config over HTTPS and spends the token.
    Flatcar: `ignition.config.url` as in "Booting Flatcar Container Linux via iPXE"
    (https://www.flatcar.org/docs/latest/installing/bare-metal/booting-with-ipxe/; the
    profile adds `flatcar.first_boot=1`), and `mayu.install=DISK` for the unit that runs
    flatcar-install. The lab image: `mayu.install=DISK mayu.image=URL`
    (qemu_images/lab/README.md)."""
    if install is not None and install.tool == "coreos-installer":
        return [f"coreos.inst.install_dev={install.disk}", f"coreos.inst.ignition_url={stub_url}"]
    args = [f"ignition.config.url={stub_url}", f"mayu.report={report_url}"]
    if install is not None:
        args.append(f"mayu.install={install.disk}")
    if install is not None and install.image is not None:
        args.append(f"mayu.image={asset_url}/{install.image}")
    return args


def local_boot_script(machine: Machine, platform: str | None) -> str:
    """Boot the machine's own disk: `exit` to the firmware on UEFI, `sanboot` of the first
    BIOS disk otherwise (falling back to the firmware's next boot device)."""
    lines = ["#!ipxe", f"echo mayu: {machine.node_name} is {machine.state}: booting its disk"]
    if platform == UEFI_PLATFORM:
        lines.append("exit")
    else:
        lines += ["sanboot --no-describe --drive 0x80 ||", "exit"]
    return "\n".join(lines) + "\n"


def wait_script(reason: str, retry_seconds: int) -> str:
    """Nothing to boot yet: say why, sleep, and let /boot.ipxe ask again."""
    return (
        "#!ipxe\n"
        f"echo mayu: {reason}; asking again in {retry_seconds} s\n"
        "set mayu_wait 1\n"
        f"sleep {retry_seconds}\n"
        "exit 1\n"
    )
