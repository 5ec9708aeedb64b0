"""Generate DIVA-GRPO's text assets (paraphrases, step-by-step think steps) for a verl parquet file with an LLM.

    python -m verl_difficulty.data.diva_generate IN.parquet OUT_ASSETS.jsonl --model PATH \
        [--backend vllm|transformers] [--num-paraphrases 5] [--min-steps 3 --max-steps 5] [--batch-size N] \
        [--max-new-tokens 4000] [--temperature 0.7] [--seed 0] [--problem-id-key problem_id] [--question-key question]

OUT_ASSETS.jsonl is the input of ``verl_difficulty.data.diva_assets`` (one ``{"problem_id", "paraphrases",
"think_steps"}`` object per line). Per problem the model gets two requests, with the prompts of the DIVA-GRPO
authors' generator (``verl/difficulty_variation/llm_client.py`` of DIVA_GRPO_release): K paraphrases in
``<variantN>`` tags, and 3-5 ``<stepN>`` think steps ending in ``\\boxed{answer}`` (with the row's images when
the backend takes images). Outputs are checked (below); a problem whose output fails a check is asked again, up
to ``--max-attempts`` times, then reported by problem id and not written.

Backends: ``vllm`` (offline batch inference, ``LLM.chat``; for the cluster, images included) and
``transformers`` (``generate`` on CPU or one GPU, text only; for tests and CPU rehearsals).

Resumable: every finished batch is appended to OUT and fsync'd. A rerun reads OUT, skips the problem ids it
holds and cuts off a torn last line, so a killed run loses at most the batch in flight and redoes no written row.
``OUT.settings.json`` records the settings that shape the assets; a rerun with other ones stops (``--overwrite``
starts over). One run per OUT at a time (an exclusive lock on OUT).

``--lenient`` is for rehearsals with random-weight models only: on a problem's last attempt an unparseable
output is used as is (split into steps / paraphrases) instead of failing the row. The assets are then noise.
"""

from verl_difficulty.data.diva_generate.backends import (
                                                         ChatRequest,
                                                         Generator,
                                                         TransformersGenerator,
                                                         VllmGenerator,
                                                         load_generator,
)
from verl_difficulty.data.diva_generate.cli import build_parser, main
from verl_difficulty.data.diva_generate.inputs import image_data_url
from verl_difficulty.data.diva_generate.options import DivaGenerateError, GenerateOptions
from verl_difficulty.data.diva_generate.parsing import (
                                                         ParseFailure,
                                                         check_answer,
                                                         check_paraphrase,
                                                         parse_paraphrases,
                                                         parse_think_steps,
)
from verl_difficulty.data.diva_generate.prompts import SYSTEM_PROMPT, paraphrase_prompt, think_step_prompt
from verl_difficulty.data.diva_generate.run import GenerateSummary, generate_assets, rehearse_assets
from verl_difficulty.data.diva_generate.store import AssetStore, check_resume_settings

__all__ = ["SYSTEM_PROMPT", "AssetStore", "ChatRequest", "DivaGenerateError", "GenerateOptions", "GenerateSummary",
           "Generator", "ParseFailure", "TransformersGenerator", "VllmGenerator", "build_parser", "check_answer",
           "check_paraphrase", "check_resume_settings", "generate_assets", "image_data_url", "load_generator", "main",
           "paraphrase_prompt", "parse_paraphrases", "parse_think_steps", "rehearse_assets", "think_step_prompt"]
