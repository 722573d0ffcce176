"""kill -9 of a command that runs a process pool: its workers end with it (they watch their parent), instead of
living on blocked on a task queue nobody feeds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _children(pid: int) -> set[int]:
    """Process ids whose parent is ``pid`` (read from /proc)."""
    kids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.add(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has ended; it waits only for its new parent to reap it


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process parents from Linux's /proc")
def test_kill_9_of_stage_01_ends_its_rendering_workers(tmp_path):
    out = tmp_path / "ds"
    proc = subprocess.Popen([sys.executable, "01_generate_dataset.py", "-q", "--output-dir", str(out), "--set",
                             "dataset.source=offline", "--set", "dataset.stride=1", "--limit", "3000", "--workers",
                             "2"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        workers: set[int] = set()
        while len(workers) < 2 or not list((out / "images").glob("*.png")):  # state: both workers rendering
            assert proc.poll() is None, "stage 01 ended before its workers were seen"
            workers = _children(proc.pid)
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)  # the parent only, as a user's kill -9 of the command
        proc.wait()
        deadline = time.monotonic() + 60  # generous: the workers check their parent twice a second
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(w) for w in workers), f"workers {sorted(w for w in workers if _alive(w))} outlived it"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for w in _children(proc.pid):
            os.kill(w, signal.SIGKILL)
