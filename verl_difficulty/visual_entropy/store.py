"""What makes a run safe to interrupt: one run per output (a lock) and finished batches kept on disk."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path

from verl_difficulty.files import atomic_write_bytes
from verl_difficulty.visual_entropy.errors import VisualEntropyError

__all__ = ["OutputLock", "Sidecar", "input_identity"]


class OutputLock:
    """An exclusive ``flock`` on ``OUTPUT.lock`` for the whole run; a second run fails at once, naming the first.

    The file holds the holder's pid, host, start time and command line. It is removed on release while still
    locked, and a run that locked a file someone just removed retries on the new one, so removal is race-free.
    The kernel drops the lock when the holder dies, however it dies: a stale file never blocks a rerun.
    """

    def __init__(self, output: Path):
        self.output = output
        self.path = output.with_name(output.name + ".lock")
        self.fd: int | None = None

    def __enter__(self) -> OutputLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                raise VisualEntropyError(f"{self.output} is being written by another run "
                                         f"({self._holder()}); wait for it to finish, or write to another output"
                                         ) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the holder removed the file between our open and our lock: lock the new one
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                "command": " ".join(sys.argv)}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self.fd = fd
        return self

    def _holder(self) -> str:
        try:
            info = json.loads(self.path.read_text())
            return f"pid {info['pid']} on {info['host']}, started {info['started']}: {info['command']}"
        except (OSError, ValueError, KeyError, TypeError):
            return f"its lock file {self.path} is held"  # the holder is still writing its details

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            self.path.unlink(missing_ok=True)  # while still locked: see the class docstring
            os.close(self.fd)
            self.fd = None


# ------------------------------------------------------------------------------------ resumable sidecar


def input_identity(path: Path) -> dict:
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


class Sidecar:
    """``OUTPUT.partial/``: a manifest plus one JSON chunk of row results per finished batch."""

    def __init__(self, folder: Path):
        self.folder = folder

    @classmethod
    def open(cls, output: Path, manifest: dict, overwrite: bool) -> Sidecar:
        sidecar = cls(output.with_name(output.name + ".partial"))
        manifest_path = sidecar.folder / "manifest.json"
        if overwrite and sidecar.folder.exists():
            shutil.rmtree(sidecar.folder)
        if manifest_path.is_file():
            sidecar._check_resumable(json.loads(manifest_path.read_text()), manifest)
            return sidecar
        if output.exists() and not overwrite:
            raise VisualEntropyError(f"{output} exists; pass --overwrite to replace it")
        sidecar.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(manifest_path, json.dumps(manifest, indent=1).encode())
        return sidecar

    def _check_resumable(self, started: dict, now: dict) -> None:
        keys = ("format", "input", "rows", "image_key", "settings")
        changed = [key for key in keys if started.get(key) != now.get(key)]
        if changed:
            input_changed = "input" in changed or "rows" in changed
            what = "the input file changed" if input_changed else f"{', '.join(changed)} changed"
            raise VisualEntropyError(f"cannot resume {self.folder}: {what} since it was started "
                                     f"(then: {started.get(changed[0])}; now: {now.get(changed[0])}); "
                                     "pass --overwrite to start over")

    def finished(self) -> dict[int, dict]:
        records = {}
        for chunk in sorted(self.folder.glob("chunk-*.json")):
            for record in json.loads(chunk.read_text()):
                records[record["row"]] = record
        return records

    def write(self, records: list[dict]) -> None:
        atomic_write_bytes(self.folder / f"chunk-{records[0]['row']:010d}.json", json.dumps(records).encode())

    def remove(self) -> None:
        shutil.rmtree(self.folder)
