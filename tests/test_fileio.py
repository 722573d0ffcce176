"""The one atomic-write helper and the output checks every stage makes before its work starts."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from alphasignal.errors import UsageError
from alphasignal.fileio import check_output_dir, check_output_file, move_atomic, write_all, write_atomic


def test_text_bytes_and_writer_functions_land_whole_with_mode_0644(tmp_path: Path) -> None:
    a = write_atomic(tmp_path / "new" / "a.txt", "héllo\n")
    b = write_atomic(tmp_path / "b.bin", b"\x00\x01")
    c = write_atomic(tmp_path / "c.txt", lambda p: Path(p).write_text("from a writer"))
    assert a.read_text(encoding="utf-8") == "héllo\n" and b.read_bytes() == b"\x00\x01"
    assert c.read_text() == "from a writer"
    assert {stat.S_IMODE(p.stat().st_mode) for p in (a, b, c)} == {0o644}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.bin", "c.txt", "new"]  # no temp files left


def test_a_failing_writer_leaves_the_old_file_and_no_temp_file(tmp_path: Path) -> None:
    target = write_atomic(tmp_path / "out.csv", "old\n")

    def broken(path: str) -> None:
        Path(path).write_text("half")
        raise RuntimeError("writer died")

    with pytest.raises(RuntimeError):
        write_atomic(target, broken)
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_a_finished_file_is_moved_into_place_whole_and_errors_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    old = write_atomic(tmp_path / "out" / "model.gguf", b"old")
    tmp = tmp_path / "out" / ".tmp-model.gguf"
    tmp.write_bytes(b"new model")
    assert move_atomic(tmp, old) == old and old.read_bytes() == b"new model" and not tmp.exists()
    assert move_atomic(old, tmp_path / "new" / "m.gguf").read_bytes() == b"new model"  # creates the folder
    with pytest.raises(UsageError, match="cannot write .*gone.gguf"):  # a missing source: one line, the path
        move_atomic(tmp_path / "missing", tmp_path / "gone.gguf")
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(UsageError, match="a_file"):
        move_atomic(tmp_path / "new" / "m.gguf", tmp_path / "a_file" / "m.gguf")


def test_bad_locations_are_one_line_usage_errors(tmp_path: Path) -> None:
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "a_dir").mkdir()
    with pytest.raises(UsageError, match="is a directory"):
        write_atomic(tmp_path / "a_dir", "x")
    with pytest.raises(UsageError, match="is a directory"):
        check_output_file(tmp_path / "a_dir")
    with pytest.raises(UsageError, match="a_file"):
        write_atomic(tmp_path / "a_file" / "out.json", "x")
    with pytest.raises(UsageError, match="is a file, not a folder"):
        check_output_dir(tmp_path / "a_file")
    with pytest.raises(UsageError, match="lies under the file"):
        check_output_file(tmp_path / "a_file" / "sub" / "out.json")
    assert check_output_file(tmp_path / "fresh" / "out.json") == tmp_path / "fresh" / "out.json"
    assert not (tmp_path / "fresh").exists()  # a check creates nothing
    assert (tmp_path / "a_file").read_text() == "x"


def test_a_read_only_folder_is_refused_before_any_work(read_only_fs: Path) -> None:
    with pytest.raises(UsageError, match="not writable"):
        check_output_file(read_only_fs / "sub" / "decision.json")
    with pytest.raises(UsageError, match=r"decision\.json.*Read-only"):
        write_atomic(read_only_fs / "decision.json", "{}")


def test_a_full_disk_names_the_path_and_leaves_nothing(full_disk: Path) -> None:
    target = full_disk / "big.bin"
    with pytest.raises(UsageError, match=r"big\.bin.*No space left.*free some space"):
        write_atomic(target, b"\0" * 200_000)
    assert list(full_disk.iterdir()) == []


def _special_files(tmp_path: Path) -> dict[str, Path]:
    """A FIFO, a symbolic link to a file the project did not write, and (as root) a character device node."""
    made = {"named pipe": tmp_path / "fifo", "symbolic link": tmp_path / "link"}
    os.mkfifo(made["named pipe"])
    (tmp_path / "users_file.txt").write_text("the user's own words")
    made["symbolic link"].symlink_to(tmp_path / "users_file.txt")
    if os.geteuid() == 0:  # a device node of our own (the null device's numbers), never the real /dev/full
        made["character device"] = tmp_path / "dev"
        os.mknod(made["character device"], 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    return made


def test_an_existing_output_that_is_not_a_regular_file_is_refused_and_left_as_it_is(tmp_path: Path) -> None:
    for kind, path in _special_files(tmp_path).items():
        before = os.lstat(path)
        for write in (lambda p: check_output_file(p), lambda p: write_atomic(p, "x")):
            with pytest.raises(UsageError, match=f"exists and is a {kind}.*not a regular file") as info:
                write(path)
            assert "\n" not in str(info.value)
        after = os.lstat(path)
        assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino), kind
    assert (tmp_path / "users_file.txt").read_text() == "the user's own words"
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_group_of_files_appears_together_or_not_at_all(full_disk: Path) -> None:
    big = b"x" * (200 * 1024)  # more than the 64 KiB tmpfs holds
    with pytest.raises(UsageError, match=r"report\.md.*(No space|space)"):
        write_all({full_disk / "decisions.jsonl": "{}\n", full_disk / "report.md": big})
    assert list(full_disk.iterdir()) == []  # neither the first file nor any temp file
    written = write_all({full_disk / "a.txt": "a", full_disk / "b.txt": b"b"})
    assert [p.read_text() for p in written] == ["a", "b"]
