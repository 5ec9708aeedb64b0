"""``python -m verl_difficulty.data.diva_generate``: the command line of the generator."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from verl_difficulty.data.diva_generate.backends import load_generator
from verl_difficulty.data.diva_generate.inputs import count_rows
from verl_difficulty.data.diva_generate.options import DivaGenerateError, GenerateOptions
from verl_difficulty.data.diva_generate.run import generate_assets
from verl_difficulty.data.diva_generate.store import check_resume_settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m verl_difficulty.data.diva_generate",
        description="Generate DIVA-GRPO paraphrases and think steps for a verl parquet file with an LLM, as the "
                    "JSONL of verl_difficulty.data.diva_assets. Resumable: rerun the same command after an "
                    "interruption.")
    parser.add_argument("input", help="verl parquet file (extra_info.<problem-id-key>, extra_info.<question-key> or "
                                      "the user message, reward_model.ground_truth, images)")
    parser.add_argument("output", help="assets JSONL to append to (created if missing)")
    parser.add_argument("--model", required=True, help="checkpoint folder or hub id of the generating model")
    parser.add_argument("--backend", choices=("vllm", "transformers"), default="vllm",
                        help="vllm (default): offline batch inference with images; transformers: text only, "
                             "for CPU tests and rehearsals")
    parser.add_argument("--num-paraphrases", type=int, default=5, help="paraphrases per problem (default 5, as the "
                                                                      "authors' prompt)")
    parser.add_argument("--min-paraphrases", type=int, default=None,
                        help="accept a problem with this many valid paraphrases after its last attempt "
                             "(default: all of them)")
    parser.add_argument("--min-steps", type=int, default=3, help="fewest think steps (default 3)")
    parser.add_argument("--max-steps", type=int, default=5, help="most think steps (default 5)")
    parser.add_argument("--no-think-steps", action="store_true", help="paraphrases only")
    parser.add_argument("--verify-answer", choices=("math", "exact", "none"), default="math",
                        help="the think steps' \\boxed{} answer must match reward_model.ground_truth: math "
                             "(default; normalised match, numbers, math_verify), exact (the authors' stripped string "
                             "equality) or none")
    parser.add_argument("--max-attempts", type=int, default=3,
                        help="requests per problem before it is reported as failed (default 3)")
    parser.add_argument("--lenient", action="store_true",
                        help="REHEARSAL ONLY (random-weight models): on the last attempt use an unparseable "
                             "output as is instead of failing the problem; the assets are noise")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="problems per batch, written and fsync'd together (default: vllm 256, "
                             "transformers 8)")
    parser.add_argument("--max-new-tokens", type=int, default=4000,
                        help="output token budget per request (default 4000, the authors' max_completion_tokens)")
    parser.add_argument("--temperature", type=float, default=0.7, help="sampling temperature (default 0.7; 0: "
                                                                       "greedy, retries then repeat themselves)")
    parser.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling (default 0.95)")
    parser.add_argument("--seed", type=int, default=0, help="seeds every request (problem id + attempt)")
    parser.add_argument("--problem-id-key", default="problem_id", help="extra_info key of the problem id")
    parser.add_argument("--question-key", default="question",
                        help="extra_info key of the raw question (default question; rows without it use the "
                             "whole user message)")
    parser.add_argument("--image-key", default="images", help="column of the row's images (default images)")
    parser.add_argument("--no-images", action="store_true", help="do not send images (a text-only model)")
    parser.add_argument("--limit", type=int, default=None, help="generate for at most N problems this run")
    parser.add_argument("--overwrite", action="store_true", help="empty OUTPUT first instead of resuming")
    parser.add_argument("--failed-out", metavar="FILE", help="write every bad or failed row as JSON Lines")
    parser.add_argument("--report", metavar="FILE", help="write the summary as JSON")
    parser.add_argument("--trust-remote-code", action="store_true", help="let the checkpoint run its own code")
    vllm = parser.add_argument_group("vllm backend")
    vllm.add_argument("--tensor-parallel-size", type=int, default=1)
    vllm.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    vllm.add_argument("--max-model-len", type=int, default=None)
    vllm.add_argument("--max-images", type=int, default=None, help="images per prompt vLLM accepts (its "
                                                                   "limit_mm_per_prompt); rows with more fail")
    local = parser.add_argument_group("transformers backend")
    local.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    local.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"))
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    options = GenerateOptions(
        num_paraphrases=args.num_paraphrases, min_paraphrases=args.min_paraphrases, min_steps=args.min_steps,
        max_steps=args.max_steps, think_steps=not args.no_think_steps, max_attempts=args.max_attempts,
        verify_answer=args.verify_answer, lenient=args.lenient, use_images=not args.no_images,
        batch_size=args.batch_size or (256 if args.backend == "vllm" else 8), seed=args.seed,
        problem_id_key=args.problem_id_key, question_key=args.question_key, image_key=args.image_key,
        limit=args.limit)
    if args.backend == "vllm":
        backend = {"tensor_parallel_size": args.tensor_parallel_size, "max_model_len": args.max_model_len,
                   "gpu_memory_utilization": args.gpu_memory_utilization, "max_images": args.max_images}
    else:
        backend = {"device": args.device, "dtype": args.dtype}
    try:
        options.validate()  # these three before the model loads
        count_rows(args.input)
        if not args.overwrite:
            check_resume_settings(args.output, options.settings())
        generator = load_generator(args.backend, args.model, max_new_tokens=args.max_new_tokens,
                                   temperature=args.temperature, top_p=args.top_p, seed=args.seed,
                                   trust_remote_code=args.trust_remote_code, **backend)
        summary = generate_assets(args.input, args.output, generator, options, overwrite=args.overwrite,
                                  failed_path=args.failed_out, progress=not args.no_progress)
    except DivaGenerateError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted: finished batches are in {args.output}; rerun the same command to resume",
              file=sys.stderr)
        return 130
    for line in summary.lines():
        print(line, file=sys.stderr)
    if args.report:
        Path(args.report).write_text(json.dumps(summary.to_json(), indent=1))
    attempted = summary.written + len(summary.failed)
    return 1 if attempted and not summary.written else 0
