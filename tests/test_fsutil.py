"""Atomic writes give files the mode an ordinary write would (issue: outputs were 0600), and keep the mode
of a file they replace; new output folders get mkdir's mode."""

from __future__ import annotations

import os
import stat

import pytest

from blockforge.fsutil import atomic_write, new_dir_mode, new_file_mode


@pytest.fixture
def umask():
    def set_mask(mask):
        os.umask(mask)
    old = os.umask(0o022)
    yield set_mask
    os.umask(old)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600), (0o002, 0o664)])
def test_new_files_honour_the_umask(tmp_path, umask, mask, mode):
    umask(mask)
    path = atomic_write(tmp_path / "out.json", b"{}")
    assert stat.S_IMODE(path.stat().st_mode) == mode == new_file_mode()
    assert new_dir_mode() == 0o777 & ~mask
    assert path.read_bytes() == b"{}" and [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_a_replaced_file_keeps_its_mode(tmp_path, umask):
    path = tmp_path / "report.html"
    path.write_text("old")
    os.chmod(path, 0o640)
    atomic_write(path, [b"new ", b"page"])
    assert path.read_text() == "new page" and stat.S_IMODE(path.stat().st_mode) == 0o640
