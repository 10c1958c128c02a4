"""Write files and whole directories so that a kill at any instant leaves the previous version or the new one.

Files: written under a temporary name in the same directory, flushed to disk (fsync), then renamed over the
target with ``os.replace``, which POSIX makes atomic: a reader sees the old bytes or the new, never a mix.

Directories (a checkpoint, a dataset): written whole under a temporary name beside the target, then put in
place by :func:`replace_dir`. ``rename(2)`` cannot replace a non-empty directory, so the swap uses Linux's
``renameat2(RENAME_EXCHANGE)``, which exchanges the two names in one atomic step (ext4, xfs, btrfs, tmpfs,
overlayfs; Linux >= 3.15). Where the system lacks it (another OS, NFS), the previous directory is first
renamed to a hidden sibling (:func:`previous_path`), then the new one into place: a kill between those two
renames leaves the name missing for the moment, and readers (:func:`resolve_dir`) then use the sibling,
which the next :func:`replace_dir` moves back first.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["fsync_dir", "fsync_tree", "previous_path", "replace_dir", "replacing", "replacing_dir", "resolve_dir",
           "write_bytes", "write_json", "write_text"]

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def fsync_dir(directory: str | os.PathLike) -> None:
    """Flush a directory's entries (names created, renamed) to disk; a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a directory; the rename is still atomic
    finally:
        os.close(fd)


def fsync_tree(directory: str | os.PathLike) -> None:
    """Flush every file under ``directory`` and the directories themselves to disk (before renaming it)."""
    for root, _, files in os.walk(directory):
        for name in files:
            with open(os.path.join(root, name), "rb+") as f:
                os.fsync(f.fileno())
        fsync_dir(root)


@contextlib.contextmanager
def replacing(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` (same suffix, so tools that infer a format from it still do) to write;
    when the block ends without error it is flushed and renamed over ``path``, otherwise deleted."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        _share_like_new_file(tmp, 0o666)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


@contextlib.contextmanager
def replacing_dir(target: str | os.PathLike) -> Iterator[Path]:
    """A temporary directory beside ``target`` to fill; when the block ends without error its files get the
    permissions new files get (not mkdtemp's private ones), it is flushed to disk and swapped in with
    :func:`replace_dir`; otherwise it is deleted."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.writing-", dir=target.parent))
    try:
        yield tmp
        _share_like_new_file(tmp, 0o777)
        for path in tmp.rglob("*"):
            _share_like_new_file(path, 0o777 if path.is_dir() else 0o666)
        fsync_tree(tmp)
        replace_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename)."""
    with replacing(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, data, indent: int | None = 2) -> None:
    """Write ``data`` as JSON to ``path`` atomically."""
    write_text(path, json.dumps(data, indent=indent))


def previous_path(target: str | os.PathLike) -> Path:
    """Where :func:`replace_dir` keeps the previous directory during a swap on a system without an atomic
    exchange (hidden, so that listings such as minari's skip it)."""
    target = Path(target)
    return target.with_name(f".{target.name}.previous")


def resolve_dir(target: str | os.PathLike) -> Path:
    """``target``, or, when it is missing because a swap without atomic exchange was killed halfway, the
    previous directory kept beside it (see :func:`replace_dir`)."""
    target = Path(target)
    previous = previous_path(target)
    if not target.exists() and previous.is_dir():
        return previous
    return target


def replace_dir(new: str | os.PathLike, target: str | os.PathLike) -> None:
    """Put the complete directory ``new`` in place of ``target`` (same file system), atomically.

    ``new`` must already be flushed to disk (:func:`fsync_tree`). Afterwards ``new`` no longer exists.
    A kill at any instant leaves ``target`` as the previous directory or the new one (where the atomic
    exchange is missing, see the module docstring: the previous one may be at :func:`previous_path`,
    which :func:`resolve_dir` finds). A kill after the swap may leave the previous directory under
    ``new``'s temporary name: litter, never read.
    """
    new, target = Path(new), Path(target)
    previous = previous_path(target)
    if not target.exists() and previous.is_dir():
        os.rename(previous, target)  # a swap without exchange was killed halfway: restore the previous first
    if not target.exists():
        os.rename(new, target)
    elif _exchange(new, target):
        shutil.rmtree(new, ignore_errors=True)  # now the previous version
    else:
        shutil.rmtree(previous, ignore_errors=True)
        os.rename(target, previous)
        os.rename(new, target)
        fsync_dir(target.parent)
        shutil.rmtree(previous, ignore_errors=True)
    fsync_dir(target.parent)


def _exchange(a: Path, b: Path) -> bool:
    """Swap the names ``a`` and ``b`` atomically (renameat2 RENAME_EXCHANGE); False where unsupported."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False  # no such flag here (old kernel, a file system without it)
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def _renameat2():
    """glibc's renameat2 (2.28+), or None on other systems."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


def _share_like_new_file(path: Path, mode: int) -> None:
    """mkstemp/mkdtemp make private files (0600/0700): give ``path`` the permissions a new file gets (umask)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, mode & ~umask)
