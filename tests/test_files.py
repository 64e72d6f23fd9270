"""Submissions written in one step and never over a file, also where the filesystem has no hard
links (exFAT, FAT32, many network mounts), with the mode every other file a user makes has."""

import contextlib
import errno
import os
import stat

import pytest

import kit.files as files
from kit.errors import KitError
from kit.files import write_new

TEXT = "id,label\nphoto é 1,1\n"


@contextlib.contextmanager
def umask(mask: int):
    before = os.umask(mask)
    try:
        yield
    finally:
        os.umask(before)


def no_hard_links(monkeypatch, code: int) -> None:
    def refuse(src, dst, *args, **kwargs):
        raise OSError(code, os.strerror(code), str(src), None, str(dst))

    monkeypatch.setattr(files.os, "link", refuse)


@pytest.mark.parametrize("code", [errno.EPERM, errno.ENOTSUP, errno.EXDEV], ids=errno.errorcode.get)
def test_a_filesystem_without_hard_links_still_gets_the_file_and_never_over_one(
    tmp_path, monkeypatch, code
):
    no_hard_links(monkeypatch, code)
    dest = tmp_path / "submissions" / "x" / "run.csv"
    assert write_new(TEXT, dest) == dest
    assert dest.read_bytes() == TEXT.encode("utf-8")
    with pytest.raises(KitError, match="already exists; nothing was overwritten"):
        write_new("id,label\n", dest)
    assert dest.read_bytes() == TEXT.encode("utf-8")
    assert sorted(p.name for p in dest.parent.iterdir()) == ["run.csv"]  # no temporary left


@pytest.mark.parametrize("links", [True, False])
@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077], ids=oct)
def test_the_file_has_the_usual_mode_not_0600(tmp_path, monkeypatch, links, mask):
    if not links:
        no_hard_links(monkeypatch, errno.EPERM)
    dest = tmp_path / "run.csv"
    with umask(mask):
        write_new(TEXT, dest)
        expected = tmp_path / "by_open.csv"
        expected.write_text(TEXT)  # what open() makes under this umask
    assert stat.S_IMODE(dest.stat().st_mode) == stat.S_IMODE(expected.stat().st_mode)
    assert stat.S_IMODE(dest.stat().st_mode) == 0o666 & ~mask


def test_a_write_that_fails_without_hard_links_leaves_nothing(tmp_path, monkeypatch):
    no_hard_links(monkeypatch, errno.EPERM)
    real, calls = os.fdopen, []

    class Full:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    def fdopen(fd, *args, **kwargs):
        calls.append(fd)
        f = real(fd, *args, **kwargs)
        return f if len(calls) == 1 else Full(f)  # the temporary is written, the copy fails

    monkeypatch.setattr(files.os, "fdopen", fdopen)
    with pytest.raises(OSError, match="No space"):
        write_new(TEXT, tmp_path / "run.csv")
    assert list(tmp_path.iterdir()) == []
