"""The word-level tokenizer of the tiny CPU assets, with Qwen's special tokens and chat template.

A word-level model trained with ``tokenizers.trainers.WordLevelTrainer`` on a corpus of every prompt template and
answer value (``tasks.corpus``; then re-numbered in sorted order, so ids never depend on a hash order), with
Qwen's special tokens (``<|endoftext|>`` = pad, ``<|im_start|>``, ``<|im_end|>`` = eos, ``<|vision_start|>``,
``<|vision_end|>``, ``<|image_pad|>``, ``<|video_pad|>``), ``<answer>``/``</answer>`` as added tokens, and
Qwen2.5-VL's ChatML chat template (default system prompt, ``{"type": "image"}`` ->
``<|vision_start|><|image_pad|><|vision_end|>``, ``add_generation_prompt``). About 70 tokens: a random policy
emits answer-shaped tokens (letters A-D, small integers) often. Decoding joins tokens with spaces.

The text model's tokenizer (transformers 5 and model_type qwen2)
    transformers 5's ``AutoTokenizer`` lists ``qwen2`` among the model types whose hub ``tokenizer_class`` it
    distrusts (``MODELS_WITH_INCORRECT_HUB_TOKENIZER_CLASS``): for a folder whose config.json says qwen2 it
    ignores ``tokenizer_class`` and rebuilds a byte-level ``Qwen2Tokenizer`` from the vocabulary, which drops
    every word and the newline of this word-level vocabulary, and verl's continuous-token builder then refuses it
    ("Expected Qwen newline to tokenize to one token"). The only override it honours is an ``auto_map``:
    ``qwen2/tokenizer_config.json`` maps ``AutoTokenizer`` to ``tokenization_tiny_word_level.TinyWordLevelTokenizer``,
    a ``PreTrainedTokenizerFast`` subclass with no code of its own, shipped in the folder. With
    ``trust_remote_code=True`` (which the VL processor needs anyway) that class loads tokenizer.json as is; without
    it transformers drops the auto_map for qwen2 and falls back to the ``tokenizer_class`` of the config
    (``TokenizersBackend``), the same tokenizer. The VL folder (model_type qwen2_5_vl) and ``tokenizer/`` (no
    config.json) need nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

__all__ = ["ANSWER_TOKENS", "CHAT_TEMPLATE", "SPECIAL_TOKENS", "VISION_TOKENS", "build_tokenizer",
           "save_text_tokenizer", "token_ids"]

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|image_pad|>", "<|video_pad|>")
VISION_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")
ANSWER_TOKENS = ("<answer>", "</answer>")
UNK = "[UNK]"

# Qwen2.5-VL-Instruct's chat template (chat_template.json of the Qwen release), verbatim.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

TOKENIZER_MODULE = "tokenization_tiny_word_level"
TOKENIZER_CLASS = "TinyWordLevelTokenizer"
TOKENIZER_CODE = '''"""The word-level tokenizer of tokenizer.json, as is (a PreTrainedTokenizerFast under its own name).

Written by verl_difficulty.cpu.tokenizer into the text-only Qwen2 folder. transformers 5 ignores tokenizer_config's
tokenizer_class for model_type "qwen2" and rebuilds a byte-level Qwen2Tokenizer from the vocabulary, which
does not tokenize this vocabulary; the auto_map entry naming this class is honoured instead. Load with
trust_remote_code=True (without it, transformers drops the auto_map for qwen2 and loads the same tokenizer.json
as TokenizersBackend).
"""

from transformers import PreTrainedTokenizerFast


class TinyWordLevelTokenizer(PreTrainedTokenizerFast):
    pass
'''


def token_ids(tokenizer) -> dict[str, int]:
    return {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}


def build_tokenizer(corpus: Iterable[str]):
    """The word-level ``PreTrainedTokenizerFast`` over the words of ``corpus`` (see the module docstring)."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    def fresh(vocab):
        tok = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(r"[ \t]+"), "removed"),
            pre_tokenizers.Split(Regex(r"\n"), "isolated"),
            pre_tokenizers.Punctuation("isolated"),
        ])
        return tok

    trained = fresh({UNK: 0})
    trained.train_from_iterator(list(corpus), trainers.WordLevelTrainer(special_tokens=[UNK]))
    # Re-number in sorted order: the trainer orders words by frequency, ties by a hash order.
    words = sorted(w for w in trained.get_vocab() if w != UNK)
    tok = fresh({w: i for i, w in enumerate([UNK, *words])})
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    tok.add_tokens(list(ANSWER_TOKENS))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token=UNK, eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", model_max_length=4096)
    fast.chat_template = CHAT_TEMPLATE
    return fast


def save_text_tokenizer(path: Path, tokenizer) -> None:
    """The tokenizer of the text-only Qwen2 folder, with an ``auto_map`` that transformers 5 honours for qwen2."""
    tokenizer.save_pretrained(path)
    (path / f"{TOKENIZER_MODULE}.py").write_text(TOKENIZER_CODE)
    config_path = path / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["auto_map"] = {"AutoTokenizer": [None, f"{TOKENIZER_MODULE}.{TOKENIZER_CLASS}"]}
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
