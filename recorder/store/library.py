"""The library folder: `catalogue.sqlite`, one directory per lesson (`lessons/<id>/`: the media file, poster and
chapter thumbnails) and a small reserve file that a full disk gives back so a recording can still be finished.

Every path handed out is built from a validated lesson id and a fixed or generated file name, then checked to be
inside the library: nothing a client sends can name a file outside it.
"""
from __future__ import annotations

import errno
import fcntl
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Optional

from recorder.store.catalogue import Catalogue

ID_RE = re.compile(r"^[0-9a-f]{16}$")
FILE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,40}\.(webm|mkv|jpg)$")
RESERVE_BYTES = 1 << 20      # enough for a long lesson's Cues and the catalogue's last updates


class LibraryBusy(RuntimeError):
    """Another server process uses this library folder (its recovery would finish our live recordings)."""


class Library:
    """`shared`: the nodes of one cluster use this folder together (a shared lock: each recovers only lessons
    whose recording node is gone, see Recorder.recover); a server outside cluster mode holds it alone."""

    def __init__(self, root: str | os.PathLike, reserve_bytes: int = RESERVE_BYTES, shared: bool = False) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "lessons").mkdir(exist_ok=True)
        self._lock_fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:   # released by the kernel when the process ends, even by kill -9
            fcntl.flock(self._lock_fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock_fd)
            raise LibraryBusy(f"the library {self.root} is in use by another liveclass server"
                              + (" that is not in cluster mode" if shared else
                                 " (servers share a library only in cluster mode, with --redis)")) from None
        self.catalogue = Catalogue(str(self.root / "catalogue.sqlite"))
        self.reserve_path = self.root / ".reserve"
        self.reserve_bytes = reserve_bytes
        self.ensure_reserve()

    def close(self) -> None:
        self.catalogue.close()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)   # closing drops the lock
            self._lock_fd = -1

    @staticmethod
    def new_id() -> str:
        return secrets.token_hex(8)

    @staticmethod
    def valid_id(lesson_id: str) -> bool:
        return bool(ID_RE.match(lesson_id))

    def lesson_dir(self, lesson_id: str, create: bool = False) -> Path:
        if not self.valid_id(lesson_id):
            raise ValueError("invalid lesson id")
        d = self._inside(self.root / "lessons" / lesson_id)
        if create:
            d.mkdir(parents=True, exist_ok=True)
        return d

    def file(self, lesson_id: str, name: str) -> Optional[Path]:
        """The existing file `name` of a lesson, or None (unknown id, bad name, missing file)."""
        if not self.valid_id(lesson_id) or not FILE_RE.match(name):
            return None
        try:
            path = self._inside(self.root / "lessons" / lesson_id / name)
        except ValueError:
            return None   # a link that leads out of the library
        return path if path.is_file() else None

    def _inside(self, path: Path) -> Path:
        resolved = path.resolve()
        if not resolved.is_relative_to(self.root):
            raise ValueError("path outside the library")
        return resolved

    def remove_lesson_files(self, lesson_id: str) -> None:
        d = self.lesson_dir(lesson_id)
        if d.is_dir() and not d.is_symlink():
            shutil.rmtree(d, ignore_errors=True)

    # ---- space kept back for finishing a recording on a full disk ----------------------------------------

    def ensure_reserve(self) -> bool:
        """Create the reserve file if it is missing (False when there is no space for it now)."""
        try:
            if self.reserve_path.exists() and self.reserve_path.stat().st_size >= self.reserve_bytes:
                return True
            fd = os.open(self.reserve_path, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.posix_fallocate(fd, 0, self.reserve_bytes)
            finally:
                os.close(fd)
            return True
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                self.release_reserve()
                return False
            raise

    def release_reserve(self) -> None:
        try:
            self.reserve_path.unlink()
        except FileNotFoundError:
            pass

    def free_bytes(self) -> int:
        st = os.statvfs(self.root)
        return st.f_bavail * st.f_frsize
