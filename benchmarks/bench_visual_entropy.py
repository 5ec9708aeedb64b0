"""Throughput of `python -m verl_difficulty.visual_entropy`, in images per second, for both backends.

N synthetic JPEG images of one size (textured: gradients, a checkerboard and noise) are scored three ways:

* prepare: decode + preprocess each image (the per-image Python loop; one thread),
* features+entropy: the batched part (one tower forward per batch for the encoder) plus the spectral entropies,
* command: the whole command on a parquet file of N one-image rows, as a user runs it (decoding overlaps the
  forward in a background thread; sidecar chunks and the final parquet are written), model loading excluded.

Each timing is repeated (`--repeats`) and the best is reported.

The encoder runs a RANDOMLY initialised Qwen2.5-VL vision tower: `--tower tiny` (the tiny Qwen2.5-VL of
verl_difficulty.cpu.tiny_models, measures our overhead) or `--tower 7b` (the real Qwen2.5-VL-7B tower shape, 32
blocks of width 1280: realistic cost, random weights), or a real local checkpoint with `--model PATH`. Throughput
does not depend on the weights' values.

    python benchmarks/bench_visual_entropy.py                                  # 64 images, 448x448, tiny tower
    python benchmarks/bench_visual_entropy.py --tower 7b --images 4 --batch-size 4 --backends encoder
    python benchmarks/bench_visual_entropy.py --model /ckpt/Qwen2.5-VL-7B-Instruct --device cuda --images 512
"""

from __future__ import annotations

import argparse
import io
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image

from verl_difficulty import visual_entropy as ve
from verl_difficulty.core.spectral import spectral_entropies
from verl_difficulty.cpu.tiny_models import write_vl_checkpoint

# Qwen2.5-VL-7B-Instruct's vision_config (config.json on the hub), for a random tower of the real shape.
QWEN25_VL_7B_VISION = {
    "depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16, "out_hidden_size": 3584,
    "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 112,
    "fullatt_block_indexes": [7, 15, 23, 31], "hidden_act": "silu", "tokens_per_second": 2,
}


def synthetic_jpegs(count: int, size: int, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    out = []
    for _ in range(count):
        cell = int(rng.integers(8, 64))
        board = ((np.mgrid[:size, :size] // cell).sum(0) % 2)[..., None] * rng.uniform(40, 120, 3)
        gradient = np.stack([yy, xx, 1 - yy], -1) * rng.uniform(60, 200, 3)
        pixels = (board + gradient + rng.normal(0, rng.uniform(2, 30), (size, size, 3))).clip(0, 255)
        buffer = io.BytesIO()
        Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def write_random_tower(path: Path, vision_config: dict, max_pixels: int) -> Path:
    """A saved bare Qwen2.5-VL vision tower with random weights (the loader accepts such a folder)."""
    from transformers.initialization import no_init_weights
    from transformers.models.qwen2_5_vl.configuration_qwen2_5_vl import Qwen2_5_VLVisionConfig
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VisionTransformerPretrainedModel
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    with no_init_weights():  # values do not matter for timing; a small random fill keeps activations finite
        tower = Qwen2_5_VisionTransformerPretrainedModel(Qwen2_5_VLVisionConfig(**vision_config))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in tower.named_parameters():
            if "norm" in name or "ln_q" in name:
                parameter.fill_(1.0)
            else:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.02)
    tower.to(torch.bfloat16).save_pretrained(path)  # bf16 on disk, like the released checkpoints
    Qwen2VLImageProcessorPil(max_pixels=max_pixels).save_pretrained(path)
    return path


def make_featurizer(backend: str, model_dir: Path | None, device: str, max_pixels: int):
    if backend == "pixel":
        return ve.PixelPatches(max_pixels)
    return ve.QwenVisionTower(model_dir, device=device, max_pixels=max_pixels)


def synchronize(featurizer) -> None:
    if getattr(featurizer, "device", torch.device("cpu")).type == "cuda":
        torch.cuda.synchronize()


def time_stages(featurizer, jpegs: list[bytes], batch_size: int) -> tuple[float, float]:
    """Seconds for decode+prepare of all images, and for features+entropy over all batches."""
    warm = [featurizer.prepare(ve.decode_image(j)) for j in jpegs[:batch_size]]
    spectral_entropies(featurizer.features(warm))  # warm-up: allocator, lazy kernels, cuDNN autotune
    synchronize(featurizer)
    start = time.perf_counter()
    prepared = [featurizer.prepare(ve.decode_image(j)) for j in jpegs]
    prepare_s = time.perf_counter() - start
    start = time.perf_counter()
    for i in range(0, len(prepared), batch_size):
        spectral_entropies(featurizer.features(prepared[i:i + batch_size]))
    synchronize(featurizer)
    return prepare_s, time.perf_counter() - start


def time_command(backend: str, model_dir: Path | None, jpegs: list[bytes], batch_size: int, device: str,
                 max_pixels: int, folder: Path) -> float:
    rows = [{"images": [{"bytes": j, "path": None}], "extra_info": {"index": i}} for i, j in enumerate(jpegs)]
    source = folder / "bench.parquet"
    pq.write_table(pa.Table.from_pylist(rows), source)
    report = ve.add_visual_entropy(source, folder / f"bench.{backend}.parquet", backend=backend, model=model_dir,
                                   batch_size=batch_size, device=device, max_pixels=max_pixels, overwrite=True,
                                   progress=False)
    assert report["rows_with_value"] == len(jpegs), report
    return report["this_run"]["seconds"]


def measure(images: int = 64, size: int = 448, batch_size: int = 16, device: str = "auto",
            backends: str = "pixel,encoder", tower: str = "tiny", model: str | None = None,
            max_pixels: int = 1280 * 28 * 28, repeats: int = 3) -> list[dict]:
    """One row per backend: images/s of prepare, features+entropy and the whole command (best of `repeats`)."""
    jpegs = synthetic_jpegs(images, size)
    device = str(ve.resolve_device(device))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model_dir = Path(model) if model else None
        for backend in backends.split(","):
            if backend == "encoder" and model_dir is None:
                if tower == "tiny":
                    model_dir = write_vl_checkpoint(folder / "tiny-random-qwen2.5-vl", max_pixels=max_pixels)
                else:
                    model_dir = write_random_tower(folder / "random-qwen2.5-vl-7b-tower", QWEN25_VL_7B_VISION,
                                                   max_pixels)
            featurizer = make_featurizer(backend, model_dir, device, max_pixels)
            # best of `repeats`: on a shared machine, other processes only ever make a run slower
            stages = [time_stages(featurizer, jpegs, batch_size) for _ in range(repeats)]
            prepare_s, features_s = min(s[0] for s in stages), min(s[1] for s in stages)
            del featurizer  # free the tower before the command loads its own
            command_s = min(time_command(backend, model_dir, jpegs, batch_size, device, max_pixels, folder)
                            for _ in range(repeats))
            rows.append({
                "backend": "pixel-proxy" if backend == "pixel" else f"encoder:{model_dir.name}",
                "images": images, "size": size, "batch_size": batch_size, "device": device, "repeats": repeats,
                "prepare_images_per_s": images / prepare_s, "features_entropy_images_per_s": images / features_s,
                "command_images_per_s": images / command_s,
            })
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--size", type=int, default=448, help="image side in pixels (square images)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--backends", default="pixel,encoder")
    parser.add_argument("--tower", choices=("tiny", "7b"), default="tiny", help="random tower when no --model")
    parser.add_argument("--model", help="a real local Qwen2.5-VL checkpoint instead of a random tower")
    parser.add_argument("--max-pixels", type=int, default=1280 * 28 * 28)
    parser.add_argument("--repeats", type=int, default=3, help="timings repeated; the best is reported")
    args = parser.parse_args(argv)

    rows = measure(args.images, args.size, args.batch_size, args.device, args.backends, args.tower, args.model,
                   args.max_pixels, args.repeats)
    print(f"{args.images} images of {args.size}x{args.size}, batch size {args.batch_size}, device "
          f"{rows[0]['device'] if rows else args.device}, torch {torch.__version__}, {torch.get_num_threads()} CPU "
          f"threads, best of {args.repeats}")
    print(f"{'backend':34s} {'prepare':>12s} {'features+H':>12s} {'command':>12s}   (images/s)")
    for row in rows:
        print(f"{row['backend']:34s} {row['prepare_images_per_s']:12.3g} {row['features_entropy_images_per_s']:12.3g} "
              f"{row['command_images_per_s']:12.3g}")
    print("command line: python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])]))


if __name__ == "__main__":
    main()
