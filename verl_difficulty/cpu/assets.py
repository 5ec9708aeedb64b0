"""Tiny, deterministic, offline assets for CPU end-to-end runs: a tokenizer, two random models and a dataset.

``build_assets(out_dir)`` (or ``python -m verl_difficulty.cpu.assets --out DIR``) writes, with no network::

    DIR/manifest.json         parameters, format version and a sha256 per file (a rebuild is skipped when they match)
    DIR/tokenizer/            word-level tokenizer (cpu.tokenizer) as a transformers PreTrainedTokenizerFast
    DIR/qwen2_5_vl/           random Qwen2.5-VL (cpu.tiny_models) + tokenizer + processor
    DIR/qwen2/                random text-only Qwen2 with the same tokenizer (+ tokenization_tiny_word_level.py)
    DIR/data/vl_{train,test}.parquet     four visual tasks (cpu.tasks) in verl's RL parquet format (56x56 drawings)
    DIR/data/text_{train,test}.parquet   the same problems described in words, for the Qwen2 model

Same parameters, same bytes: two builds give byte-identical parquet files and weights (test_assets.py).
The models load with ``trust_remote_code=True`` (see cpu.tiny_models and cpu.tokenizer for why); the VL parquet
files load through ``verl_difficulty.cpu.dataset.PilVisionRLHFDataset`` where torchvision is missing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from verl_difficulty.cpu.tasks import TASKS, corpus, random_policy_reward_rate, task_rows
from verl_difficulty.cpu.tiny_models import write_text_model, write_vl_checkpoint
from verl_difficulty.cpu.tokenizer import build_tokenizer, save_text_tokenizer
from verl_difficulty.files import atomic_write_text

__all__ = ["ASSET_VERSION", "build_assets", "main"]

ASSET_VERSION = 3  # bump whenever the bytes a build writes change
MANIFEST = "manifest.json"


def _write_parquet(rows: list[dict], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path, compression="snappy")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _paths(root: Path) -> dict[str, str]:
    data = root / "data"
    return {"root": str(root), "manifest": str(root / MANIFEST), "tokenizer": str(root / "tokenizer"),
            "vl_model": str(root / "qwen2_5_vl"), "text_model": str(root / "qwen2"),
            "vl_train": str(data / "vl_train.parquet"), "vl_test": str(data / "vl_test.parquet"),
            "text_train": str(data / "text_train.parquet"), "text_test": str(data / "text_test.parquet")}


_TOP_LEVEL = ("tokenizer", "qwen2_5_vl", "qwen2", "data")


def _manifest_matches(root: Path, params: dict) -> bool:
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    if manifest.get("version") != ASSET_VERSION or manifest.get("params") != params:
        return False
    files = manifest.get("files") or {}
    return bool(files) and all((root / rel).is_file() and _sha256(root / rel) == digest
                               for rel, digest in files.items())


def build_assets(out_dir: str | os.PathLike, seed: int = 0, n_train: int = 128, n_test: int = 32,
                 image_size: int = 56, force: bool = False) -> dict[str, str]:
    """Build (or reuse) the tiny assets in ``out_dir``; returns their paths (see the module docstring).

    Reuse: when ``out_dir/manifest.json`` records the same parameters and format version and every listed
    file still has its recorded sha256, nothing is rebuilt (``force=True`` rebuilds anyway). A build happens
    in a temporary folder beside the result and replaces the asset folders only once complete.
    """
    if image_size < 56 or image_size % 28:
        raise ValueError(f"image_size must be a multiple of 28 and >= 56 (the processor must not resize), "
                         f"got {image_size}")
    if n_train < 1 or n_test < 1:
        raise ValueError("n_train and n_test must be >= 1")
    root = Path(out_dir).expanduser().resolve()
    params = {"seed": int(seed), "n_train": int(n_train), "n_test": int(n_test), "image_size": int(image_size)}
    if not force and _manifest_matches(root, params):
        return _paths(root)

    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".build-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        (tmp / "data").mkdir(parents=True)
        tokenizer = build_tokenizer(corpus(image_size))
        tokenizer.save_pretrained(tmp / "tokenizer")
        write_vl_checkpoint(tmp / "qwen2_5_vl", seed, image_size, tokenizer=tokenizer)
        save_text_tokenizer(tmp / "qwen2", tokenizer)
        write_text_model(tmp / "qwen2", tokenizer, seed)
        for split, n in (("train", n_train), ("test", n_test)):
            vl_rows, text_rows = task_rows(split, n, seed, image_size)
            _write_parquet(vl_rows, tmp / "data" / f"vl_{split}.parquet")
            _write_parquet(text_rows, tmp / "data" / f"text_{split}.parquet")
        (root / MANIFEST).unlink(missing_ok=True)  # no manifest while the folders are swapped: a crash means a rebuild
        for name in _TOP_LEVEL:
            shutil.rmtree(root / name, ignore_errors=True)
            os.replace(tmp / name, root / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    files = {str(p.relative_to(root)): _sha256(p) for name in _TOP_LEVEL
             for p in sorted((root / name).rglob("*")) if p.is_file()}
    manifest = {"version": ASSET_VERSION, "params": params, "vocab_size": len(tokenizer),
                "tasks": {t.data_source: t.problem_type for t in TASKS}, "files": files}
    atomic_write_text(root / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return _paths(root)


# ------------------------------------------------------------------------------------------------------ CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m verl_difficulty.cpu.assets",
                                     description="Build tiny offline assets (tokenizer, random Qwen2.5-VL and Qwen2, "
                                                 "synthetic multi-task parquet) for CPU end-to-end runs.")
    parser.add_argument("--out", required=True, help="output folder (reused when it holds the same build)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-train", type=int, default=128, help="training rows per variant (default 128)")
    parser.add_argument("--n-test", type=int, default=32, help="test rows per variant (default 32)")
    parser.add_argument("--image-size", type=int, default=56, help="image side in pixels, multiple of 28 (default 56)")
    parser.add_argument("--force", action="store_true", help="rebuild even when the manifest matches")
    parser.add_argument("--random-policy", action="store_true",
                        help="also print what a uniform random policy earns per task on the VL training set")
    args = parser.parse_args(argv)
    params = {"seed": args.seed, "n_train": args.n_train, "n_test": args.n_test, "image_size": args.image_size}
    reused = not args.force and _manifest_matches(Path(args.out).expanduser().resolve(), params)
    paths = build_assets(args.out, force=args.force, **params)
    print(("reused" if reused else "built") + f" assets in {paths['root']}")
    for key, value in paths.items():
        if key != "root":
            print(f"  {key:11s} {value}")
    if args.random_policy:
        rates = random_policy_reward_rate(paths["vl_train"], paths["tokenizer"])
        print("random policy (16 uniform tokens, 8 per prompt):")
        for key, r in rates.items():
            print(f"  {key:22s} mean score {r['mean_score']:.3f}  acc {r['mean_acc']:.3f}  "
                  f"score>0 {r['hit_rate']:.3f}  groups with variance {r['groups_with_variance']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
