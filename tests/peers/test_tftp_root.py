"""The TFTP root is filled from the Debian `ipxe` package's own binaries."""

from __future__ import annotations

from pathlib import Path

import pytest

from mayu_py.dhcp import IPXE_BINARIES, prepare_tftp_root
from mayu_py.dhcp.tftp import IPXE_SOURCE
from tests.support.peers import require_peers

pytestmark = pytest.mark.peer


def test_prepare_tftp_root_from_the_ipxe_package(tmp_path: Path) -> None:
    require_peers(files=tuple(IPXE_SOURCE / name for name in IPXE_BINARIES))
    root = prepare_tftp_root(tmp_path / "tftp")
    for name in IPXE_BINARIES:
        assert (root / name).read_bytes() == (IPXE_SOURCE / name).read_bytes(), name
        assert not (root / name).is_symlink(), name
