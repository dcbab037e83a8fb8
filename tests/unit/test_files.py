"""mayu_py.files: whole-or-nothing writes with the asked mode, and file digests."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest

from mayu_py.files import atomic_copy, atomic_write, file_digest, replacing, temp_target


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_write_replaces_with_the_mode_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "f.conf"
    target.write_text("old")
    target.chmod(0o644)
    atomic_write(target, "new text", 0o600)
    assert target.read_text() == "new text" and _mode(target) == 0o600
    atomic_write(target, b"\x00bytes", 0o644)
    assert target.read_bytes() == b"\x00bytes" and _mode(target) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["f.conf"]


def test_a_failure_keeps_the_old_file_and_removes_the_temporary(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), replacing(target) as temporary:
        temporary.write_text("half")
        raise RuntimeError("killed half-way")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_the_temporary_is_private_until_it_gets_its_mode(tmp_path: Path) -> None:
    with replacing(tmp_path / "secret.key", 0o644) as temporary:
        assert temporary.parent == tmp_path and _mode(temporary) == 0o600
        assert temp_target(temporary.name) == "secret.key"
    assert _mode(tmp_path / "secret.key") == 0o644


def test_atomic_copy_follows_links(tmp_path: Path) -> None:
    (tmp_path / "real").write_bytes(b"x" * 3_000_000)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    atomic_copy(tmp_path / "link", tmp_path / "copy", 0o444)
    copy = tmp_path / "copy"
    assert not copy.is_symlink() and copy.read_bytes() == b"x" * 3_000_000
    assert _mode(copy) == 0o444


@pytest.mark.parametrize(
    ("name", "target"),
    [
        (".demo-1-master-0.ab12.ign.k2j_3x9q.tmp", "demo-1-master-0.ab12.ign"),
        (".state.json.abcd1234.tmp", "state.json"),
        ("demo-1-master-0.ab12.ign", None),
        ("plain.tmp", None),
        (".hidden", None),
    ],
)
def test_temp_target(name: str, target: str | None) -> None:
    assert temp_target(name) == target


def test_file_digest(tmp_path: Path) -> None:
    data = b"mayu" * 600_000  # more than one 1 MiB chunk
    (tmp_path / "f").write_bytes(data)
    assert file_digest(tmp_path / "f") == hashlib.sha256(data).hexdigest()
    assert file_digest(tmp_path / "f", "sha512") == hashlib.sha512(data).hexdigest()
