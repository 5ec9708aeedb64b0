"""python -m verl_difficulty.eval: see verl_difficulty/eval/__init__.py and docs/eval.md."""

from __future__ import annotations

import argparse
import importlib.util
import sys

from .grounding import BOX_FRAMES
from .io import EvalDataError
from .registry import BENCHMARKS, PAPERS


def _splits(text: str) -> dict[str, str]:
    out = {}
    for item in filter(None, text.split(",")):
        name, sep, split = item.partition("=")
        if not sep or not split:
            raise argparse.ArgumentTypeError(f"--splits item {item!r}: expected BENCHMARK=SPLIT")
        out[name.strip()] = split.strip()
    return out


def _benchmarks(text: str) -> list[str]:
    names = [b.strip() for b in text.split(",") if b.strip()]
    bad = [b for b in names if b not in BENCHMARKS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown benchmark(s) {bad}; known: {', '.join(sorted(BENCHMARKS))}")
    return names


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m verl_difficulty.eval", description=__doc__)
    p.add_argument("--model", required=True, help="merged Hugging Face checkpoint folder (weights + processor)")
    p.add_argument("--recipe", required=True, choices=sorted(PAPERS), help="whose prompt, answer format and "
                   "paper numbers to use; also the default benchmark list")
    p.add_argument("--data-root", required=True, help="folder with one sub-folder per benchmark (docs/eval.md)")
    p.add_argument("--benchmarks", type=_benchmarks, default=None, help="comma-separated subset (default: the "
                   "paper's list)")
    p.add_argument("--backend", choices=("vllm", "transformers"), default=None,
                   help="default: vllm when installed, else transformers")
    p.add_argument("--limit", type=int, default=None, help="first N items of each benchmark (smoke runs)")
    p.add_argument("--out", default=None, help="output folder (default eval_out/<recipe>); predictions are "
                   "resumed from it")
    p.add_argument("--batch-size", type=int, default=8, help="transformers batch size (vLLM gets each benchmark "
                   "in batches of this many times 64)")
    p.add_argument("--max-new-tokens", type=int, default=4096, help="generation budget (the papers' max response)")
    p.add_argument("--splits", type=_splits, default=None, help="override splits, e.g. "
                   "refcoco=testA,mathvision=testmini")
    p.add_argument("--box-frame", choices=BOX_FRAMES, default=None, help="RefCOCO: the frame the model writes "
                   "boxes in (default: the recipe's base model: norm1000 for Qwen3-VL, pixel for Qwen2.5-VL)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default); the authors' in-training "
                   "validation sampled at 0.7 (OpenVLThinkerV2) / 0.6 (DIVA-GRPO) with top-p 0.95")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling bound when --temperature > 0")
    p.add_argument("--min-pixels", type=int, default=None, help="image processor min_pixels (default: the "
                   "recipe's training value)")
    p.add_argument("--max-pixels", type=int, default=None, help="image processor max_pixels (default: the "
                   "recipe's training value)")
    p.add_argument("--tensor-parallel-size", type=int, default=1, help="vLLM tensor parallelism")
    p.add_argument("--skip-missing", action="store_true", help="skip benchmarks without a data folder")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.limit is not None and args.limit < 1:
        sys.exit("--limit must be >= 1")
    backend_name = args.backend or ("vllm" if importlib.util.find_spec("vllm") else "transformers")
    from .generation import make_backend
    from .prompts import get_recipe_prompt
    from .runner import evaluate, missing_data, render_markdown

    missing = [] if args.skip_missing else missing_data(args.recipe, args.data_root, args.benchmarks)
    if missing:  # before loading the model: a cluster job fails in seconds, not after model start-up
        print("error: benchmark data missing (or pass --skip-missing / --benchmarks):\n  " + "\n  ".join(missing),
              file=sys.stderr)
        return 2
    lo, hi = get_recipe_prompt(args.recipe).pixels
    pixels = (args.min_pixels or lo, args.max_pixels or hi)
    if pixels[0] > pixels[1]:
        sys.exit(f"--min-pixels {pixels[0]} exceeds --max-pixels {pixels[1]}")
    backend = make_backend(backend_name, args.model, args.max_new_tokens, pixels, args.temperature, args.top_p,
                           args.tensor_parallel_size)
    batch = args.batch_size * (64 if backend_name == "vllm" else 1)  # vLLM schedules its own batches
    try:
        report = evaluate(model=args.model, recipe=args.recipe, data_root=args.data_root, backend=backend,
                          benchmarks=args.benchmarks, limit=args.limit, out_dir=args.out or f"eval_out/{args.recipe}",
                          batch_size=batch, splits=args.splits, box_frame=args.box_frame,
                          skip_missing=args.skip_missing)
    except (EvalDataError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(render_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
