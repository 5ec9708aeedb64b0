"""The assets JSONL being written: append-only, locked, resumable; and the settings file recorded beside it."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from verl_difficulty.data.diva_assets import AssetError, read_assets
from verl_difficulty.data.diva_generate.options import DivaGenerateError
from verl_difficulty.files import atomic_write_text


class AssetStore:
    """OUT opened for appending under an exclusive lock. On open: a torn last line (no newline, not a whole
    record) is cut off, the file is validated with ``read_assets`` and its problem ids become ``done``."""

    def __init__(self, path: str | os.PathLike, overwrite: bool = False):
        self.path = Path(path)
        self.overwrite = overwrite
        self.done: set[str] = set()
        self.torn_bytes = 0
        self.handle = None

    def __enter__(self) -> AssetStore:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(self.path, "a+b")  # noqa: SIM115 - held for the whole run
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.handle.close()
            raise DivaGenerateError(f"{self.path} is being written by another run; wait for it or write to "
                                    "another file") from None
        try:
            self._recover()
        except BaseException:
            self.handle.close()
            raise
        return self

    def _recover(self) -> None:
        if self.overwrite:
            self.handle.truncate(0)
        self.handle.seek(0)
        data = self.handle.read()
        if data and not data.endswith(b"\n"):
            start = data.rfind(b"\n") + 1
            if _whole_record(data[start:]):
                self._write(b"\n")  # a complete record missing only its newline
            else:  # a write cut short by a kill: the row is generated again
                self.handle.truncate(start)
                self.torn_bytes = len(data) - start
                os.fsync(self.handle.fileno())
        try:
            self.done = set(read_assets(str(self.path)))
        except AssetError as err:
            raise DivaGenerateError(f"cannot resume from {err}; fix or delete that line, or pass --overwrite "
                                    "to start over") from None

    def _write(self, data: bytes) -> None:
        self.handle.write(data)
        self.handle.flush()
        os.fsync(self.handle.fileno())  # durable before the next batch starts

    def append(self, records: list[dict]) -> None:
        if records:
            self._write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode())
            self.done.update(r["problem_id"] for r in records)

    def __exit__(self, *exc) -> None:
        self.handle.close()  # closing releases the lock


def _whole_record(tail: bytes) -> bool:
    try:
        record = json.loads(tail)
    except ValueError:
        return False
    return isinstance(record, dict) and "problem_id" in record


def settings_path(output: str | os.PathLike) -> Path:
    output = Path(output)
    return output.with_name(output.name + ".settings.json")


def check_resume_settings(output: str | os.PathLike, settings: dict, has_records: bool | None = None) -> dict:
    """The settings OUT was started with (empty when new); raises when ``settings`` differ from them, since a
    resumed run with other ones would mix two kinds of assets. ``has_records`` None: OUT is non-empty."""
    output, path = Path(output), settings_path(output)
    if has_records is None:
        has_records = output.is_file() and output.stat().st_size > 0
    if not (has_records and path.is_file()):
        return {}
    before = json.loads(path.read_text())
    changed = sorted(k for k in settings if before.get("settings", {}).get(k) != settings[k])
    if changed:
        raise DivaGenerateError(
            f"{output} was started with other settings: " + ", ".join(
                f"{k} {before['settings'].get(k)!r} -> {settings[k]!r}" for k in changed)
            + "; rerun with the earlier values, or pass --overwrite to start over")
    return before


def record_settings(output: Path, settings: dict, model: str, has_records: bool, log) -> None:
    """Check the settings against OUT's (see check_resume_settings), then record this run's beside OUT."""
    path = settings_path(output)
    before = check_resume_settings(output, settings, has_records)
    if before and before.get("model") != model:
        log(f"warning: {output} was started with model {before.get('model')!r}, now {model!r}")
    atomic_write_text(path, json.dumps({"settings": settings, "model": model}, indent=1))
