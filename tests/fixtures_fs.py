"""File-system fixtures: a real read-only and a real full tmpfs (mounted as root, as on the project's machines and
CI), for the tests that check what a write leaves behind when it fails."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest


def _tmpfs(where: Path, options: str):
    """Mount a real tmpfs (needs root, as on the project's machines and CI); yields the mount point."""
    mnt = where / f"tmpfs-{uuid.uuid4().hex[:6]}"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


@pytest.fixture
def full_disk(tmp_path: Path):
    yield from _tmpfs(tmp_path, "size=64k")


@pytest.fixture
def read_only_fs(tmp_path: Path):
    yield from _tmpfs(tmp_path, "ro,size=64k")
