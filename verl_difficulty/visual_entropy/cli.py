"""``python -m verl_difficulty.visual_entropy``: the command line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import torch

from verl_difficulty.visual_entropy.errors import VisualEntropyError
from verl_difficulty.visual_entropy.job import add_visual_entropy, format_summary
from verl_difficulty.visual_entropy.pixels import PIXEL_MAX_PIXELS

__all__ = ["build_parser", "default_threads", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m verl_difficulty.visual_entropy",
        description="Add Durian's perceptual complexity H(I) (spectral entropy of an image's patch features) to "
                    "a verl RL parquet file as extra_info['visual_entropy']. Resumable: rerun the same command "
                    "after an interruption.",
    )
    parser.add_argument("input", help="verl RL parquet file")
    parser.add_argument("output", help="parquet file to write (a report goes to OUTPUT.report.json)")
    parser.add_argument("--backend", choices=("encoder", "pixel"), default="encoder",
                        help="encoder (default): encoder features, the Qwen2.5-VL vision tower's merged patch "
                             "embeddings. pixel: a MODEL-FREE PROXY over raw 14x14x3 pixel patches, NOT encoder "
                             "features; its values are labelled 'pixel-proxy'")
    parser.add_argument("--model", help="local Qwen2.5-VL checkpoint folder for --backend encoder: the run's own "
                                        "model (actor_rollout_ref.model.path)")
    parser.add_argument("--image-key", default="images", help="column holding each row's images (default: images)")
    parser.add_argument("--batch-size", type=int, default=16, help="images per encoder forward (default: 16)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] (default: auto)")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                        help="encoder compute dtype (default float32; bfloat16 noise can swamp near-flat images)")
    parser.add_argument("--on-error", choices=("skip", "fail"), default="skip",
                        help="an unreadable image: skip its row and report it (default), or stop")
    parser.add_argument("--max-pixels", type=int, default=None,
                        help="resize bound per image (default: encoder: the checkpoint's image processor's "
                             f"max_pixels; pixel: {PIXEL_MAX_PIXELS})")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing OUTPUT and discard unfinished work instead of resuming")
    parser.add_argument("--threads", type=int, default=default_threads(),
                        help="torch CPU threads (default: half the CPUs this process may use, 1 to 4: a decoding "
                             "thread and other processes need cores too; more threads than free cores stall "
                             f"at every parallel region). Default here: {default_threads()}")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def default_threads() -> int:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(4, usable // 2))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    try:
        report = add_visual_entropy(
            args.input, args.output, backend=args.backend, model=args.model, image_key=args.image_key,
            batch_size=args.batch_size, device=args.device, dtype=args.dtype, on_error=args.on_error,
            max_pixels=args.max_pixels, overwrite=args.overwrite, progress=not args.no_progress)
    except VisualEntropyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(format_summary(report))
    return 0

