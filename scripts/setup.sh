#!/usr/bin/env bash
# Installs everything mayu_py and its tests need on a fresh Debian 12 (run as root), creates the
# virtualenv in .venv and starts the daemons there is no systemd to start (virtlogd, libvirtd).
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  python3 python3-venv python3-dev gcc make pkg-config git
  qemu-system-x86 qemu-utils ipxe-qemu ipxe ovmf
  dnsmasq-base etcd-server etcd-client ignition busybox-static linux-image-amd64 cpio kmod
  libvirt-daemon-system libvirt-dev libxml2-utils
  iproute2 iptables nftables nginx-light wrk openssl curl tftp-hpa procps psmisc gnupg gpgv
  prometheus haproxy chromium chromium-driver
  syslinux syslinux-common mtools dosfstools grub-efi-amd64-bin
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip >/dev/null
.venv/bin/pip install -q -e '.[dev]'

# No systemd here: start libvirt's daemons ourselves when they are not running.
pgrep -x virtlogd >/dev/null || virtlogd -d
pgrep -x libvirtd >/dev/null || libvirtd -d
for _ in $(seq 50); do
  [ -S /var/run/libvirt/libvirt-sock ] && break
  sleep 0.2
done
echo "setup: ready (.venv/bin/mayu, .venv/bin/mayuctl)"
