"""Convert the papers' published training data into verl RL parquet files.

    python -m verl_difficulty.data.prepare FORMAT INPUT OUTPUT [options]

FORMAT is one of:

* ``openvlthinker``: the JSON (array, or JSONL) the OpenVLThinkerV2 authors train from (their
  ``example_data/*.json``), with the authors' prompt per problem type;
* ``geometry3k``: the published Geometry3K parquet (``hiyouga/geometry3k``), with verl's geo3k
  ``<think>`` + ``\\boxed{}`` instruction;
* ``diva``: the DIVA-GRPO authors' EasyR1 training parquet (``problem``, ``answer``, ``images``, ``id`` and their
  asset fields ``variants`` / ``think_steps``), with their ``<think>`` + ``\\boxed{}`` format prompt; the assets
  go to ``extra_info.paraphrases`` / ``extra_info.think_steps`` and, with ``--assets-out``, to the JSONL of
  ``verl_difficulty.data.diva_assets``.

Every written row has what verl's RLHFDataset and this package read: ``data_source``, ``prompt`` (one user
message, ``<image>`` placeholders in place), ``images`` (one dict per placeholder: the file's bytes, or its
absolute path, with ``min_pixels`` / ``max_pixels``, which the vision preprocessing of verl's rollout reads
per image), ``ability``, ``reward_model`` ``{"style": "rule", "ground_truth"}`` and ``extra_info`` (``split``,
``index``, ``problem_id``, ``problem_type``, ... ; the per-format fields are in docs/data_prepare.md).

A row that cannot be converted (not a JSON object, no problem or answer, an image missing or unreadable, a
placeholder count that does not match its images, ...) is reported with its row number and problem id and
left out; the others are written. Exit status: 0 when rows were written (bad rows reported), 1 when every row
was bad or, with ``--strict``, when any was (nothing is written then), 2 for an unusable input or option.
"""

from verl_difficulty.data.prepare.cli import build_parser, main
from verl_difficulty.data.prepare.common import BadRow, PrepareError, RowError
from verl_difficulty.data.prepare.formats import FORMATS
from verl_difficulty.data.prepare.geometry3k import GEO3K_INSTRUCTION
from verl_difficulty.data.prepare.openvlthinker import OVT_TASK_TYPES, openvlthinker_prompt
from verl_difficulty.data.prepare.writer import PrepareSummary, prepare

__all__ = ["FORMATS", "GEO3K_INSTRUCTION", "OVT_TASK_TYPES", "BadRow", "PrepareError", "PrepareSummary", "RowError",
           "build_parser", "main", "openvlthinker_prompt", "prepare"]
