"""Lab boot: seconds from power-on to `installed` per machine, through the real network boot.

For each N, `mayu lab up --machines N --accel tcg` boots N VMs at once through DHCP
(dnsmasq) -> iPXE -> HTTP (kernel, initrd) -> Linux -> DHCP -> Ignition (the stub over HTTP,
the secret config over HTTPS) -> report;
power-on is the moment the lab started qemu, installed the server's event time. The floor
boots the same kernel + initrd N at a time with `qemu -kernel`, the same machine's Ignition
config over fw_cfg and no network boot (qemu user networking with restrict=on: nothing
leaves the machine), up to the console line the image prints when it would report.

    .venv/bin/python bench/lab_boot.py [--machines 1,4,8] [--accel tcg] [--vms libvirt]

`--vms libvirt` (issue 10): the machines are libvirt domains powered on through their Redfish
BMCs; per machine, power-on (the lab's BMC request) to `running` through PXE, the install to
disk, the reboot and the boot from disk, and the time of `mayu lab ctl reinstall --wait` of
lab1 through Redfish. The floor boots a copy of an installed disk N at a time with plain qemu
(no network boot, user networking with restrict=on) up to the console line where the image
would report `running`.

Needs root; uses the lab's namespace mayu-lab (no lab may be up).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mayu_py.lab import topology as topo  # noqa: E402
from mayu_py.lab.api import LabClient  # noqa: E402
from mayu_py.lab.netns import InNamespace  # noqa: E402
from mayu_py.lab.state import LabState  # noqa: E402
from tests.e2e.lab_machine import provision_as  # noqa: E402

BIN = Path(sys.executable).parent
FLOOR_MARK = "MAYU: done in"
DISK_FLOOR_MARK = "MAYU: report built"


def lab(*args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "mayu"), "lab", *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def installed_times(state: LabState, done_state: str = "installed") -> list[float]:
    """Per machine: the first `done_state` event's time - the lab's first power-on."""
    times = []
    with InNamespace(state.namespace) as ns:
        client = LabClient(ns, state.url, state.token)
        for vm in state.vms:
            events = client.machine(vm.mac)["events"]
            done = [e["time"] for e in events if e["to"] == done_state]
            assert done and vm.first_started, (vm, events)
            times.append(done[0] - vm.first_started)
    return times


def a_config(state: LabState) -> str:
    """A lab machine's secret Ignition config for the floor: the machine is reinstalled and
    its provisioning played from its address (its VM is off by now), stub over HTTP, the
    config over HTTPS."""
    m = topo.LabMachine(1)
    with InNamespace(state.namespace) as ns:
        _, config = provision_as(ns, LabClient(ns, state.url, state.token), m)
    # No phone-home from the floor VMs: they have no route to the server.
    config.get("storage", {}).get("files", [])[:] = [
        f for f in config.get("storage", {}).get("files", []) if "report" not in f["path"]
    ]
    return json.dumps(config)


def floor(n: int, kernel: Path, initrd: Path, config: Path, accel: str, work: Path) -> list[float]:
    """N direct-kernel boots at once; seconds from qemu start to the image's `done` line."""
    procs = []
    for i in range(n):
        console = work / f"floor-{n}-{i}.log"
        argv = [
            "qemu-system-x86_64", "-accel", accel, "-m", "256", "-smp", "1",
            "-display", "none", "-monitor", "none", "-no-reboot",
            "-serial", f"file:{console}", "-kernel", str(kernel), "-initrd", str(initrd),
            "-netdev", "user,id=n0,restrict=on",
            "-device", f"virtio-net-pci,netdev=n0,mac=52:54:00:78:00:{i + 1:02x},disable-legacy=on,romfile=",
            "-fw_cfg", f"name=opt/com.coreos/config,file={config}",
            "-append", "console=ttyS0 quiet mayu.after=poweroff",
        ]  # fmt: skip
        procs.append((time.time(), console, subprocess.Popen(argv, stdout=subprocess.DEVNULL)))
    return wait_for_marks(procs, FLOOR_MARK)


def wait_for_marks(
    procs: list[tuple[float, Path, subprocess.Popen[bytes]]], mark: str
) -> list[float]:
    """Seconds from each VM's start to `mark` on its console; then every VM is ended."""
    times: dict[int, float] = {}
    deadline = time.time() + 300
    while len(times) < len(procs) and time.time() < deadline:
        for i, (start, console, _) in enumerate(procs):
            if i not in times and console.exists() and mark in console.read_text(errors="replace"):
                times[i] = time.time() - start
        time.sleep(0.05)
    for _, _, proc in procs:
        proc.kill()
        proc.wait(timeout=30)
    assert len(times) == len(procs), f"only {len(times)} of {len(procs)} floor VMs got there"
    return list(times.values())


def disk_floor(n: int, installed: Path, accel: str, work: Path) -> list[float]:
    """N boots at once of overlays on an installed disk, to where the image would report."""
    procs = []
    for i in range(n):
        overlay, console = work / f"disk-floor-{n}-{i}.qcow2", work / f"disk-floor-{n}-{i}.log"
        subprocess.run(
            ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(installed),
             str(overlay)], check=True,
        )  # fmt: skip
        argv = [
            "qemu-system-x86_64", "-accel", accel, "-m", "512", "-smp", "1",
            "-display", "none", "-monitor", "none", "-serial", f"file:{console}",
            "-drive", f"file={overlay},if=virtio,format=qcow2",
            "-netdev", "user,id=n0,restrict=on",
            "-device", f"virtio-net-pci,netdev=n0,mac=52:54:00:78:01:{i + 1:02x},disable-legacy=on,romfile=",
        ]  # fmt: skip
        procs.append((time.time(), console, subprocess.Popen(argv, stdout=subprocess.DEVNULL)))
    return wait_for_marks(procs, DISK_FLOOR_MARK)


def reinstall_seconds(state: LabState, env: dict[str, str]) -> float:
    """`mayu lab ctl reinstall MAC --wait` of lab1 through its Redfish BMC."""
    started = time.monotonic()
    done = lab("ctl", "reinstall", state.vms[0].mac, "--wait", "--timeout", "400", env=env)
    assert done.returncode == 0, done.stderr
    return time.monotonic() - started


def main_libvirt(counts: list[int], accel: str, work: Path, env: dict[str, str]) -> None:
    """`--vms libvirt`: power-on -> running through the disk install, the reinstall, the floor."""
    data = work / "data"
    installed = work / "installed.qcow2"
    rows = []
    for n in counts:
        started = time.monotonic()
        up = lab("up", "--vms", "libvirt", "--machines", str(n), "--accel", accel,
                 "--data-dir", str(data), "--tenants", "0", env=env)  # fmt: skip
        wall = time.monotonic() - started
        try:
            if up.returncode != 0:
                print(f"N={n}: mayu lab up --vms libvirt failed:\n{up.stdout[-2000:]}", flush=True)
                continue
            state = LabState.load(work / "state.json")
            assert state is not None
            accel = state.accel
            times = installed_times(state, "running")
            if not installed.exists():
                disk = data / "lab" / "machines" / "lab1.qcow2"
                subprocess.run(["qemu-img", "convert", "-U", "-O", "qcow2", str(disk),
                                str(installed)], check=True)  # fmt: skip
            again = reinstall_seconds(state, env)
        finally:
            lab("down", env=env)
        rows.append((n, times, again, wall))
        print(f"N={n}: power-on -> running through install {fmt(times)}, reinstall of lab1 "
              f"{again:.1f} s (lab up {wall:.0f} s)", flush=True)  # fmt: skip
    print()
    print("| N | power-on -> running: median | max | reinstall (lab1) | floor (installed disk, "
          "qemu): median | max |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for n, times, again, _ in rows:
        base = disk_floor(n, installed, accel, work)
        print(
            f"| {n} | {statistics.median(times):.1f} s | {max(times):.1f} s | {again:.1f} s | "
            f"{statistics.median(base):.1f} s | {max(base):.1f} s |",
            flush=True,
        )


def fmt(times: list[float]) -> str:
    return f"median {statistics.median(times):5.1f} s, max {max(times):5.1f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", default="1,4,8", help="comma-separated N values")
    parser.add_argument("--accel", default="tcg", choices=["tcg", "kvm", "auto"])
    parser.add_argument("--vms", default="qemu", choices=["qemu", "libvirt"])
    args = parser.parse_args()
    counts = [int(x) for x in args.machines.split(",")]
    work = Path(tempfile.mkdtemp(prefix="mayu-lab-bench-"))
    work.chmod(0o755)  # dnsmasq drops to nobody and reads the TFTP root under it
    env = {**os.environ, "MAYU_LAB_STATE": str(work / "state.json")}
    if args.vms == "libvirt":
        main_libvirt(counts, args.accel, work, env)
        return
    data = work / "data"
    rows = []
    config_path = work / "floor.ign"
    accel = "tcg"
    for n in counts:
        started = time.monotonic()
        up = lab(
            "up",
            "--machines",
            str(n),
            "--accel",
            args.accel,
            "--data-dir",
            str(data),
            "--tenants",
            "0",
            "--vms",
            "qemu",
            env=env,
        )
        wall = time.monotonic() - started
        try:
            if up.returncode != 0:
                raise SystemExit(f"mayu lab up --machines {n} failed:\n{up.stdout}\n{up.stderr}")
            state = LabState.load(work / "state.json")
            assert state is not None
            accel = state.accel
            times = installed_times(state)
            boots = sum(vm.boots for vm in state.vms)
            if not config_path.exists():
                config_path.write_text(a_config(state))
        finally:
            lab("down", env=env)
        rows.append((n, times, boots, wall))
        print(
            f"N={n}: network boot power-on -> installed {fmt(times)} (boots {boots}, lab up {wall:.0f} s)",
            flush=True,
        )
    kernel, initrd = data / "assets" / "lab" / "vmlinuz", data / "assets" / "lab" / "initrd.img"
    print()
    print("| N | network boot: median | max | floor (-kernel, fw_cfg): median | max | qemu boots |")
    print("|---|---|---|---|---|---|")
    for n, times, boots, _ in rows:
        base = floor(n, kernel, initrd, config_path, accel, work)
        print(
            f"| {n} | {statistics.median(times):.1f} s | {max(times):.1f} s | "
            f"{statistics.median(base):.1f} s | {max(base):.1f} s | {boots} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
