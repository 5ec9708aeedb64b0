"""Evaluation of a merged Hugging Face checkpoint on the benchmarks of the recipes' papers.

``python -m verl_difficulty.eval --model DIR --recipe openvlthinker_v2|durian|diva_grpo --data-root DIR``
reads each benchmark from local files in its published layout, generates with vLLM (GPU) or transformers
(CPU), scores with the benchmark's rule and writes ``results.md`` / ``results.json`` with the paper's numbers
beside ours. See docs/eval.md.
"""

from .registry import BENCHMARKS, PAPERS
from .runner import evaluate

__all__ = ["BENCHMARKS", "PAPERS", "evaluate"]
