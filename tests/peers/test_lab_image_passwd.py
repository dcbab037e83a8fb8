"""The lab image's useradd/usermod/groupadd stand-ins, run with busybox sh as in the guest."""

from __future__ import annotations

from pathlib import Path

import pytest

from mayu_py.command import run
from mayu_py.errors import CommandError
from mayu_py.images.lab import LabInputs
from tests.support.peers import require_peers

BUSYBOX = Path("/bin/busybox")
RECIPE = LabInputs().recipe_dir

pytestmark = pytest.mark.peer


@pytest.fixture(autouse=True, scope="module")
def _busybox() -> None:
    require_peers(files=(BUSYBOX,))  # busybox-static


@pytest.fixture
def root(tmp_path: Path) -> Path:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (etc / "group").write_text("root:x:0:\nwheel:x:10:\n")
    (etc / "shadow").write_text("root:*:19000:0:99999:7:::\n")
    (etc / "gshadow").write_text("root:*::\nwheel:*::\n")
    return tmp_path


def tool(name: str, *args: str | Path) -> None:
    run([BUSYBOX, "sh", RECIPE / name, *args])


def lines(root: Path, name: str) -> list[str]:
    return (root / "etc" / name).read_text().splitlines()


def test_useradd_as_ignition_calls_it(root: Path) -> None:
    # Exactly the argv Ignition 2.14 used for a user with keys and groups.
    tool(
        "useradd",
        "--root",
        root,
        "--create-home",
        "--password",
        "*",
        "--groups",
        "wheel,docker",
        "core",
    )
    assert "core:x:1000:1000::/home/core:/bin/bash" in lines(root, "passwd")
    assert "core:*:19000:0:99999:7:::" in lines(root, "shadow")
    # a missing group (docker) is created with the next free gid
    assert lines(root, "group") == [
        "root:x:0:",
        "wheel:x:10:core",
        "core:x:1000:",
        "docker:x:1001:core",
    ]
    assert lines(root, "gshadow") == ["root:*::", "wheel:*::core", "core:*::", "docker:*::core"]
    home = root / "home" / "core"
    assert home.is_dir() and home.stat().st_uid == 1000 and (home.stat().st_mode & 0o777) == 0o700


def test_useradd_options_and_existing_user(root: Path) -> None:
    tool("useradd", "--root", root, "--no-create-home", "--password", "$6$h", "--uid", "1500",
         "--comment", "Ops", "--home-dir", "/var/ops", "--gid", "wheel", "--shell", "/bin/sh", "ops")  # fmt: skip
    assert "ops:x:1500:10:Ops:/var/ops:/bin/sh" in lines(root, "passwd")
    assert "ops:$6$h:19000:0:99999:7:::" in lines(root, "shadow")
    assert not (root / "var" / "ops").exists()
    with pytest.raises(CommandError) as err:
        tool("useradd", "--root", root, "ops")
    assert err.value.returncode == 9


def test_usermod_changes_fields_and_replaces_groups(root: Path) -> None:
    tool("useradd", "--root", root, "--create-home", "--password", "*", "--groups", "wheel", "core")
    tool("usermod", "--root", root, "--password", "$6$new", "--shell", "/bin/zsh", "--groups", "adm", "core")  # fmt: skip
    assert "core:x:1000:1000::/home/core:/bin/zsh" in lines(root, "passwd")
    assert "core:$6$new:19000:0:99999:7:::" in lines(root, "shadow")
    assert lines(root, "group") == ["root:x:0:", "wheel:x:10:", "core:x:1000:", "adm:x:1001:core"]
    assert lines(root, "gshadow") == ["root:*::", "wheel:*::", "core:*::", "adm:*::core"]
    tool("usermod", "--root", root, "--password", "$6$root", "root")
    assert "root:$6$root:19000:0:99999:7:::" in lines(root, "shadow")


def test_groupadd(root: Path) -> None:
    tool("groupadd", "--root", root, "--gid", "2000", "--password", "*", "ops")
    assert "ops:x:2000:" in lines(root, "group")
    assert "ops:*::" in lines(root, "gshadow")
    tool("groupadd", "--root", root, "--password", "*", "dev")
    assert "dev:x:1000:" in lines(root, "group")
    with pytest.raises(CommandError) as err:
        tool("groupadd", "--root", root, "ops")
    assert err.value.returncode == 9


def test_setfiles_is_a_no_op() -> None:
    tool("setfiles", "-F", "whatever")
