"""DIVA-GRPO's training data for verl: every original problem followed by its difficulty-adaptive variants.

Use as verl's ``data.custom_cls`` (``path=pkg://verl_difficulty.data.diva_dataset``, ``name=DivaDataset``)
with ``data.shuffle=False``; settings under ``data.diva`` (see :class:`DivaSettings` and docs/diva_data.md).

Index i of the dataset is family position p = i // (1 + k) and slot s = i % (1 + k): slot 0 is the
original unchanged, slots 1..k are variants planned from the problem's CURRENT tracked difficulty (the
trainer's snapshot file, re-read when it changes). The family at position p is original j = order[p],
a seeded per-epoch permutation, so verl's SequentialSampler sees shuffled families whose members stay
consecutive, and a batch whose size is a multiple of 1 + k holds whole families.

(No ``from __future__ import annotations``: verl may load this file by path, outside ``sys.modules``,
where dataclasses cannot resolve string annotations.)
"""

import logging
import os
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
from verl.utils.dataset.rl_dataset import RLHFDataset

from verl_difficulty.core.diva_variants import (
    DUPLICATE,
    HINT,
    IMAGE_TRANSFORMS,
    ORIGINAL_PLAN,
    PARAPHRASE,
    RELEASED,
    RELEASED_HINT_TEXT,
    RELEASED_POINTER,
    TEXT_IN_IMAGE,
    UNIFORM,
    VariantAssets,
    VariantPlan,
    draw_deltas,
    family_order,
    plan_variant,
)
from verl_difficulty.data.difficulty_store import SnapshotReader
from verl_difficulty.data.perturb import apply_image_transforms, render_text_into_image
from verl_difficulty.settings import ENV_TRACKER_PATH, ConfigError, DivaSettings, to_plain
from verl_difficulty.verl_glue.fields import canonical_labels

logger = logging.getLogger(__name__)

__all__ = ["DivaDataset", "DivaSettings", "ENV_TRACKER_PATH", "IMAGE_HAS_TEXT_KEY", "POINTER_TEXT",
           "apply_plan"]

POINTER_TEXT = "Answer the question shown in the image."  # uniform mode; the released mode says RELEASED_POINTER
IMAGE_HAS_TEXT_KEY = "text_in_image"  # extra_info flag (released field): the image mixes text and picture
ASSET_FIELDS = ("paraphrases", "think_steps")
PLACEHOLDER = re.compile(r"<image>|<video>|<audio>")
ASSETS_FIX = ("write them with `python -m verl_difficulty.data.diva_assets INPUT.parquet ASSETS.jsonl OUTPUT.parquet` "
              "(it validates them), or drop the field to train that row without such variants")


def _file_list(files: Any) -> list[str]:
    files = to_plain(files)
    if files is None:
        return []
    return [str(f) for f in (files if isinstance(files, list | tuple) else [files])]


def _is_validation(data_files: Any, config: Any) -> bool:
    """verl builds its validation set with the same data config; tell it apart by its files."""
    files = _file_list(data_files)
    return bool(files) and files == _file_list(config.get("val_files", None)) \
        and files != _file_list(config.get("train_files", None))


def check_batch_sizes(config: Any, family_size: int) -> None:
    """A batch must hold whole families: the DIVA global group needs an original with all its variants."""
    for key in ("train_batch_size", "gen_batch_size"):
        value = config.get(key, None)
        if value is None or (key == "gen_batch_size" and value == 1):  # 1: verl's exact-refill modes
            continue
        if int(value) % family_size:
            fixed = -(-int(value) // family_size) * family_size
            raise ConfigError(
                f"data.{key}={value} is not a multiple of 1 + data.diva.num_variants = {family_size}, so an "
                f"original and its variants would be split across batches. Set data.{key} to a multiple of "
                f"{family_size} (e.g. {fixed}; it counts rows, variants included) or change data.diva.num_variants.")


# ------------------------------------------------------------------ rows


def read_text_assets(extra_info: Mapping, field: str, row_label: str) -> list[str]:
    """``extra_info[field]`` as a list of strings; missing/None/empty = [] (a counted fallback later)."""
    value = extra_info.get(field)
    if value is None:
        return []
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v.strip() for v in value):
        shown = repr(value) if len(repr(value)) < 80 else repr(value)[:77] + "..."
        raise ValueError(f"{row_label}: extra_info[{field!r}] must be a list of non-empty strings, got "
                         f"{type(value).__name__} {shown}; {ASSETS_FIX}")
    return list(value)


def _user_message(messages: list, row_label: str) -> dict:
    for message in reversed(messages):
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            return message
    raise ValueError(f"{row_label}: the prompt has no user message with text content; DIVA variants rewrite it")


def _split_question(text: str, question: Any) -> tuple[str, str, str]:
    """(before, question, after): the raw question if it occurs in the text, else the whole text."""
    if isinstance(question, str) and question.strip() and question in text:
        start = text.index(question)
        return text[:start], question, text[start + len(question):]
    return "", text, ""


def _keep_placeholders(old: str, new: str) -> str:
    """``new`` with ``old``'s media placeholders (verl needs one per image), unless ``new`` has the same ones."""
    placeholders = PLACEHOLDER.findall(old)
    if PLACEHOLDER.findall(new) == placeholders:
        return new
    return "".join(placeholders) + PLACEHOLDER.sub("", new).strip()


def apply_plan(row: dict, plan: VariantPlan, rng: np.random.Generator, *, prompt_key: str = "prompt",
               image_key: str = "images", question_key: str = "question", row_label: str = "row") -> None:
    """Rewrite a verl row dict in place into the variant ``plan`` describes (text and images)."""
    transforms = set(plan.transforms)
    info = row.get("extra_info") or {}
    images = list(row.get(image_key) or [])
    if transforms & {PARAPHRASE, HINT, TEXT_IN_IMAGE} or plan.note:
        message = _user_message(row[prompt_key], row_label)
        before, question, after = _split_question(message["content"], info.get(question_key))
        if PARAPHRASE in transforms:
            paraphrase = read_text_assets(info, "paraphrases", row_label)[plan.paraphrase_index]
            question = _keep_placeholders(question, paraphrase)
        if HINT in transforms:
            steps = read_text_assets(info, "think_steps", row_label)[:plan.hint_steps]
            question = _with_hints(question, steps, plan.mode)
        if plan.note:
            question = f"{question} {plan.note}"
        if TEXT_IN_IMAGE in transforms:
            shown = PLACEHOLDER.sub("", question).strip()
            placeholders = PLACEHOLDER.findall(question)
            if images:
                images[0] = render_text_into_image(images[0], shown)
            else:  # a text-only row gets a new image, and the placeholder for it
                images, placeholders = [render_text_into_image(None, shown)], ["<image>"]
            question = _pointer(placeholders, plan.mode)
        message["content"] = before + question + after
    image_ops = [t for t in plan.transforms if t in IMAGE_TRANSFORMS]
    if image_ops:
        images = [apply_image_transforms(image, image_ops, rng, angle=plan.angle, sigma=plan.sigma)
                  for image in images]
    if images:
        row[image_key] = images


def _with_hints(question: str, steps: list[str], mode: str) -> str:
    if mode == RELEASED:  # the released sentence, then the steps joined by spaces
        return f"{question} " + RELEASED_HINT_TEXT.format(steps=" ".join(steps))
    return question.rstrip() + "\n" + "\n".join(f"Hint (step {k}): {s.strip()}" for k, s in enumerate(steps, 1))


def _pointer(placeholders: list[str], mode: str) -> str:
    """What replaces a question rendered into the image; keeps one placeholder per image."""
    if mode != RELEASED:
        return "".join(placeholders) + POINTER_TEXT
    if "<image>" in placeholders:  # the released sentence holds the image's placeholder itself
        rest = list(placeholders)
        rest.remove("<image>")
        return "".join(rest) + RELEASED_POINTER
    return "".join(placeholders) + RELEASED_POINTER.replace("<image>", "image")


def _image_has_text(info: Mapping, row_label: str) -> bool:
    value = info.get(IMAGE_HAS_TEXT_KEY)
    if value is None:
        return False
    if not isinstance(value, bool | np.bool_):
        raise ValueError(f"{row_label}: extra_info[{IMAGE_HAS_TEXT_KEY!r}] must be true, false or null (true: the "
                         f"image mixes text and picture, so the released stacked transform only rotates it), "
                         f"got {type(value).__name__} {value!r}")
    return bool(value)


def _asset_counts(row: dict, info: Mapping, image_key: str, can_add_image: bool, row_label: str,
                  mode: str = UNIFORM) -> VariantAssets:
    return VariantAssets(
        num_images=len(row.get(image_key) or []),
        num_paraphrases=len(read_text_assets(info, "paraphrases", row_label)),
        num_think_steps=len(read_text_assets(info, "think_steps", row_label)),
        can_add_image=can_add_image,
        image_has_text=mode == RELEASED and _image_has_text(info, row_label),  # only the released stack reads it
    )


# ------------------------------------------------------------------ dataset


class DivaDataset(RLHFDataset):
    """verl's RLHFDataset with DIVA families: each original followed by ``data.diva.num_variants`` variants.

    Every row's ``extra_info`` carries ``problem_id`` (shared by the family), ``difficulty`` (tracked D + the
    recorded δ), ``diva_variant`` (transforms applied, ``original`` for slot 0), ``diva_delta`` (the recorded δ:
    the planned one in ``variant_mode=uniform``, the released table's value in ``released``) and ``diva_fallback``
    (why a planned variant degraded to a duplicate, ``""`` if it did not). The raw ``paraphrases`` /
    ``think_steps`` assets are dropped from emitted rows.
    """

    def __init__(self, data_files, tokenizer, config, processor=None, max_samples: int = -1):
        self._pending: tuple[int, int] | None = None  # set while verl builds one row's messages
        self.diva = DivaSettings.from_data_config(config)
        self.is_validation = _is_validation(data_files, config)
        use_variants = not self.is_validation or self.diva.variants_in_validation
        self.num_variants = self.diva.num_variants if use_variants else 0
        self.family_size = 1 + self.num_variants
        self.shuffle_families = self.diva.shuffle_families and not self.is_validation
        if self.num_variants and not self.is_validation:
            if config.get("shuffle", False):
                raise ValueError(
                    "data.shuffle=True makes verl sample rows with a RandomSampler, which scatters an original and "
                    "its variants across batches. Set data.shuffle=False: DivaDataset shuffles whole families "
                    "itself (data.diva.shuffle_families, seeded by data.diva.seed / data.seed).")
            check_batch_sizes(config, self.family_size)
        self.epoch = 0
        self._order_cache: tuple[tuple[int, int], np.ndarray] | None = None
        self._family_cache: tuple | None = None
        self._reader = SnapshotReader(self.diva.tracker_path)
        super().__init__(data_files, tokenizer, config, processor, max_samples)
        self._check_assets()

    # verl's trainer hands the live tracker file to the dataset through this attribute
    @property
    def tracker_path(self) -> str | None:
        return self._reader.path

    @tracker_path.setter
    def tracker_path(self, path: str | None) -> None:
        self._reader = SnapshotReader(path)
        self._family_cache = None

    def set_epoch(self, epoch: int) -> None:
        """Family order and variant draws depend on the epoch; verl itself never calls this (see docs)."""
        self.epoch = int(epoch)
        self._family_cache = None

    @property
    def num_originals(self) -> int:
        return len(self.dataframe)

    def __len__(self) -> int:
        return self.num_originals * self.family_size

    def locate(self, index: int) -> tuple[int, int]:
        """Dataset index -> (original row j, slot s)."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} rows")
        position, slot = divmod(int(index), self.family_size)
        return int(self._order()[position]), slot

    def _order(self) -> np.ndarray:
        key = (self.epoch, self.num_originals)
        if self._order_cache is None or self._order_cache[0] != key:
            order = family_order(self.num_originals, self.diva.seed, self.epoch, self.shuffle_families)
            self._order_cache = (key, order)
        return self._order_cache[1]

    def __getitem__(self, item):
        original, slot = self.locate(item)
        self._pending = (original, slot)
        try:
            return super().__getitem__(original)
        finally:
            self._pending = None

    def _build_messages(self, example: dict, key: str):
        # RLHFDataset.__getitem__ turns the raw row into messages here and then keeps using the same row
        # dict (extra_info, images), so rewriting the row in place makes verl process the variant.
        if self._pending is not None:
            self._make_variant(example, *self._pending)
        return super()._build_messages(example, key)

    # -------------------------------------------------------------- variants

    def problem_id(self, info: Mapping, original: int) -> str:
        value = info.get(self.diva.problem_id_field)
        label = None if value is None or value == "" else self._canonical_id(value, original)
        # rows without an id: the row index (stable while the files, their order and the filters stay fixed)
        return f"row-{original}" if label is None else label

    def _canonical_id(self, value: Any, original: int) -> str | None:
        """The id as the estimator and the tracker key it (1, 1.0 and "1" are one problem); None for NaN."""
        labels = np.empty(1, dtype=object)
        labels[0] = value
        return canonical_labels(labels, np.ones(1, dtype=bool), [self._row_label(original)],
                                key=self.diva.problem_id_key, setting=f"{DivaSettings.NODE}.problem_id_key")[0]

    def _row_label(self, original: int, problem_id: str | None = None) -> str:
        files = ", ".join(os.path.basename(str(f)) for f in self.original_data_files)
        return f"row {original} of {files}" + (f" (problem_id {problem_id!r})" if problem_id is not None else "")

    def _family(self, original: int, slot: int, problem_id: str) -> tuple[float, tuple[int, ...]]:
        """(D, deltas) of a family. A worker fetches a family's members in a row; reusing the first member's
        reading keeps them consistent when the snapshot changes mid-family (one hint at most, one D)."""
        key = (original, self.epoch, self.tracker_path)
        cached = self._family_cache
        if cached is not None and cached[0] == key and slot > cached[1]:
            self._family_cache = (key, slot, *cached[2:])
            return cached[2], cached[3]
        difficulty = float(self._reader.current().get(problem_id))
        rng = np.random.default_rng([self.diva.seed, original, 0, self.epoch])  # slot 0 draws the family
        deltas = draw_deltas(difficulty, self.num_variants, rng, self.diva.variant_mode)
        self._family_cache = (key, slot, difficulty, deltas)
        return difficulty, deltas

    def _make_variant(self, row: dict, original: int, slot: int) -> VariantPlan:
        info = dict(row.get("extra_info") or {})
        problem_id = self.problem_id(info, original)
        label = self._row_label(original, problem_id)
        row["extra_info"] = info
        difficulty, deltas = self._family(original, slot, problem_id)
        if slot == 0:
            plan = ORIGINAL_PLAN
        else:
            rng = np.random.default_rng([self.diva.seed, original, slot, self.epoch])
            assets = _asset_counts(row, info, self.image_key, self.processor is not None, label, self.diva.variant_mode)
            plan = plan_variant(deltas[slot - 1], assets, rng, self.diva.only_available_transforms,
                                self.diva.variant_mode)
            if plan.transforms != (DUPLICATE,):
                apply_plan(row, plan, rng, prompt_key=self.prompt_key, image_key=self.image_key,
                           question_key=self.diva.question_field, row_label=label)
        for field in ASSET_FIELDS:  # inputs of variant building; no need to carry them through rollout
            info.pop(field, None)
        info.update(problem_id=problem_id, difficulty=difficulty + plan.delta, diva_variant=plan.name,
                    diva_delta=plan.delta, diva_fallback=plan.fallback or "")
        return plan

    def _check_assets(self) -> None:
        """Fail at start-up, not hours into training, on malformed assets; log how many rows have them."""
        if not self.num_variants or "extra_info" not in self.dataframe.column_names:
            return
        counts = dict.fromkeys(ASSET_FIELDS, 0)
        for original, info in enumerate(self.dataframe.select_columns(["extra_info"])["extra_info"]):
            info = info or {}
            for field in ASSET_FIELDS:
                label = self._row_label(original, self.problem_id(info, original))
                counts[field] += bool(read_text_assets(info, field, label))
        logger.info("DivaDataset: %d originals, %d with paraphrases, %d with think steps (rows without them "
                    "fall back to duplicates, counted in extra_info.diva_fallback)", self.num_originals,
                    counts["paraphrases"], counts["think_steps"])
