"""Image entries of a written row: read, check that they decode, embed the bytes or keep the absolute path."""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path
from typing import Any

import pyarrow as pa

from verl_difficulty.data.prepare.common import RowError


@dataclasses.dataclass(frozen=True)
class ImageOptions:
    min_pixels: int
    max_pixels: int
    embed: bool  # True: the file's bytes go into the parquet; False: its absolute path


def check_decodes(data: bytes, where: str) -> None:
    from verl_difficulty.images import decode_image

    try:
        decode_image(data)  # a truncated file fails here, not mid-training
    except Exception as err:  # PIL raises many types (UnidentifiedImageError, OSError, SyntaxError, ...)
        raise RowError(f"unreadable image: {where} ({type(err).__name__}: {err})") from None


def image_from_file(path: Path, options: ImageOptions) -> dict:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise RowError(f"image not found: {path}") from None
    except OSError as err:
        raise RowError(f"unreadable image: {path} ({err.strerror or err})") from None
    check_decodes(data, str(path))
    return image_entry(data, str(path), options)


def image_entry(data: bytes | None, path: str | None, options: ImageOptions) -> dict:
    ref = {"bytes": data} if options.embed else {"image": path}
    return {**ref, "min_pixels": options.min_pixels, "max_pixels": options.max_pixels}


def image_type(embed: bool) -> pa.DataType:
    ref = pa.field("bytes", pa.binary()) if embed else pa.field("image", pa.string())
    return pa.list_(pa.struct([ref, pa.field("min_pixels", pa.int64()), pa.field("max_pixels", pa.int64())]))


def resolve_image(path: Any, args: argparse.Namespace) -> Path:
    if not isinstance(path, str) or not path:
        raise RowError(f"bad image entry: expected a path string, got {path!r}")
    root = Path(args.image_root) if args.image_root else Path(args.input).resolve().parent
    return (root / path).resolve() if not os.path.isabs(path) else Path(path)


def image_from_struct(entry: Any, args: argparse.Namespace, options: ImageOptions, k: int) -> dict:
    if not isinstance(entry, dict):
        raise RowError(f"bad image {k}: expected a {{'bytes', 'path'}} struct, got {type(entry).__name__}")
    data, path = entry.get("bytes"), entry.get("path")
    if data:
        check_decodes(data, f"image {k} (embedded bytes{f', {path}' if path else ''})")
        if options.embed:
            return image_entry(data, None, options)
        raise RowError(f"image {k} is embedded in the parquet and has no file; use --image-mode bytes")
    if path:
        return image_from_file(resolve_image(path, args), options)
    raise RowError(f"missing image {k}: neither bytes nor path")


def image_list(value: Any) -> list:
    """The authors' rows hold one image as a struct, EasyR1's hold a list; bytes or a path may stand alone."""
    if value is None:
        return []
    if isinstance(value, dict | bytes | str):
        return [value]
    if isinstance(value, list):
        return value
    raise RowError(f"bad images: expected a list, a {{'bytes', 'path'}} struct, bytes or a path, "
                   f"got {type(value).__name__}")


def image_from_any(entry: Any, args: argparse.Namespace, options: ImageOptions, k: int) -> dict:
    if isinstance(entry, bytes):
        entry = {"bytes": entry}
    elif isinstance(entry, str):
        entry = {"path": entry}
    return image_from_struct(entry, args, options, k)
