"""Answer templates: a format check and an answer extractor per recipe.

A template is a small frozen dataclass; ``get_template(name)`` looks one up in a registry, and
``register_template`` adds one. Everything here is linear in the response length (``str.find`` /
``str.rfind``, one brace scan, and for the lenient fallbacks two regular expressions that cannot backtrack
more than linearly: a character class with fixed-width look-arounds, and a digit run whose look-behind fails
inside a run), no catastrophic backtracking on model output.

Built-in templates:

- ``think_answer`` (default, OpenVLThinkerV2 paper): ``<think>…</think>`` or ``<thinking>…</thinking>``
  then ``<answer>…</answer>`` and nothing else.
- ``think_boxed`` (Durian / DIVA-GRPO): ``<think>…</think>`` then text containing ``\\boxed{…}``;
  the answer is the content of the LAST ``\\boxed{}``.
- ``answer`` / ``boxed``: the same answers without the reasoning block.
- ``openvlthinker_v2`` (``SpacedTagTemplate``, the OpenVLThinkerV2 authors' released reward): ``<thinking>…</thinking>``
  then ``<answer>…</answer>``; whitespace next to ``<``, ``>`` and ``/`` is ignored when the layout is checked
  (``< answer >`` is a tag), an empty answer block still counts as the layout, and the answer is the last block,
  read from the original text (so ``a / b`` inside the answer keeps its spaces).
- ``lenient_choice`` / ``lenient_integer`` / ``lenient_box`` (``LenientTemplate``), for tiny random policies /
  smoke tests: take the tagged answer if present, else the last answer-shaped token; format credit only with
  tags. The answer-shaped token is the last standalone capital letter (``choice``), the last integer
  (``integer``), or the last four integers read as two corners (``box``). A random 16-token policy essentially
  never writes ``<answer>…</answer>``, so with the strict templates GRPO would see all-zero rewards.
"""

from __future__ import annotations

import bisect
import json
import re
from dataclasses import dataclass

__all__ = ["LenientTemplate", "SpacedTagTemplate", "Template", "TEMPLATES", "get_template", "register_template",
           "extract_boxed", "squeeze_tag_spaces"]

_BOXED = "\\boxed{"


def extract_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` with balanced braces, or None."""
    start = text.rfind(_BOXED)
    attempts = 0
    while start != -1 and attempts < 8:  # bounded retries: no quadratic scan on "\\boxed{" spam
        attempts += 1
        depth = 1
        i = start + len(_BOXED)
        n = len(text)
        while i < n:
            c = text[i]
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    return text[start + len(_BOXED) : i]
            i += 1
        # unbalanced: try an earlier \boxed{
        start = text.rfind(_BOXED, 0, start)
    return None


@dataclass(frozen=True)
class Template:
    """How a response is laid out.

    think_tags: accepted names of the reasoning block (``think`` -> ``<think>…</think>``); empty = no
        reasoning block required.
    answer: ``"tag"`` (``<answer>…</answer>``) or ``"boxed"`` (last ``\\boxed{…}``).
    """

    name: str
    think_tags: tuple[str, ...] = ("think", "thinking")
    answer: str = "tag"
    answer_tag: str = "answer"

    def __post_init__(self):
        if self.answer not in ("tag", "boxed"):
            raise ValueError(f"Template {self.name!r}: answer must be 'tag' or 'boxed', got {self.answer!r}")

    # ---- pieces -------------------------------------------------------------------------------
    def _split_think(self, text: str) -> str | None:
        """The text after the leading reasoning block, or None when the block is missing/broken."""
        stripped = text.lstrip()
        if not self.think_tags:
            return stripped
        for tag in self.think_tags:
            open_t, close_t = f"<{tag}>", f"</{tag}>"
            if stripped.startswith(open_t):
                end = stripped.find(close_t, len(open_t))
                if end == -1:
                    return None
                body = stripped[len(open_t) : end]
                # the reasoning must not contain the answer block or a second reasoning block
                if f"<{self.answer_tag}>" in body or open_t in body:
                    return None
                return stripped[end + len(close_t) :]
        return None

    def extract_answer(self, text: str) -> str | None:
        """The final answer (stripped), or None. Does not require the format to be right."""
        if self.answer == "boxed":
            ans = extract_boxed(text)
        else:
            open_t, close_t = f"<{self.answer_tag}>", f"</{self.answer_tag}>"
            end = text.rfind(close_t)
            if end == -1:
                return None
            start = text.rfind(open_t, 0, end)
            if start == -1:
                return None
            ans = text[start + len(open_t) : end]
        if ans is None:
            return None
        ans = ans.strip()
        return ans or None

    def check_format(self, text: str) -> bool:
        """True when the whole response follows the template and the answer is non-empty."""
        rest = self._split_think(text)
        if rest is None:
            return False
        rest = rest.strip()
        if self.answer == "boxed":
            ans = extract_boxed(rest)
            return ans is not None and ans.strip() != ""
        open_t, close_t = f"<{self.answer_tag}>", f"</{self.answer_tag}>"
        if not (rest.startswith(open_t) and rest.endswith(close_t)):
            return False
        inner = rest[len(open_t) : len(rest) - len(close_t)]
        if open_t in inner or close_t in inner:
            return False
        return inner.strip() != ""


_LETTER_RE = re.compile(r"(?<![A-Za-z0-9])[A-Z](?![A-Za-z0-9])")
_INT_RE = re.compile(r"(?<![\w.])\d+(?![\w.])")
_FALLBACKS = ("choice", "integer", "box")
_MAX_BOX_DIGITS = 12  # a box corner with more digits is not an answer (and int() refuses > 4300 digits)


@dataclass(frozen=True)
class LenientTemplate(Template):
    """For tiny random policies / smoke tests: take the tagged answer if present, else the last answer-shaped
    token; format credit only with tags (``check_format`` is the strict one of the base template).

    fallback: ``choice``: the last capital letter standing alone (no letter or digit beside it: ``B``, ``(B)``,
    ``B.``); ``integer``: the last run of digits with no word character or ``.`` beside it (``3`` in
    ``x 3 ,``; nothing in ``x3``, ``3_`` or ``3.5``; ``-3`` gives ``3``); ``box``: the last four such
    integers a, b, c, d read as the corners (a, b) and (c, d), returned as JSON
    ``[min(a, c), min(b, d), max(a, c), max(b, d)]``. Fewer than four integers, or one longer than 12 digits:
    no answer.
    """

    fallback: str = "integer"

    def __post_init__(self):
        super().__post_init__()
        if self.fallback not in _FALLBACKS:
            raise ValueError(f"LenientTemplate {self.name!r}: fallback must be one of {_FALLBACKS}, "
                             f"got {self.fallback!r}")

    def extract_answer(self, text: str) -> str | None:
        tagged = super().extract_answer(text)
        if tagged is not None:
            return tagged
        if self.fallback == "choice":
            found = _LETTER_RE.findall(text)
            return found[-1] if found else None
        ints = _INT_RE.findall(text)
        if self.fallback == "integer":
            return ints[-1] if ints else None
        if len(ints) < 4 or any(len(v) > _MAX_BOX_DIGITS for v in ints[-4:]):
            return None
        x1, y1, x2, y2 = (int(v) for v in ints[-4:])
        return json.dumps([min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)])


_TAG_DELIMS_RE = re.compile(r"([<>/])")


def squeeze_tag_spaces(text: str) -> tuple[str, list[tuple[int, int]]]:
    """``text`` with every whitespace run next to ``<``, ``>`` or ``/`` removed (the OpenVLThinkerV2 authors
    apply ``re.sub(r"\\s*(<|>|/)\\s*", r"\\1", text)`` to the response), and the kept segments as
    (start in the result, start in ``text``) pairs for ``raw_index``. Linear: one split on single characters,
    no regex backtracking over whitespace runs."""
    parts = _TAG_DELIMS_RE.split(text)
    out: list[str] = []
    segments: list[tuple[int, int]] = []
    n_out = n_raw = 0
    last = len(parts) - 1
    for i, part in enumerate(parts):
        keep = part
        offset = 0
        if i % 2 == 0:  # text between delimiters: drop the whitespace that touches a delimiter
            if i < last:
                keep = keep.rstrip()
            if i > 0:
                stripped = keep.lstrip()
                offset = len(keep) - len(stripped)
                keep = stripped
        if keep:
            segments.append((n_out, n_raw + offset))
            out.append(keep)
            n_out += len(keep)
        n_raw += len(part)
    return "".join(out), segments


def raw_index(segments: list[tuple[int, int]], i: int) -> int:
    """Index in the original text of character ``i`` of the squeezed text."""
    k = bisect.bisect_right(segments, (i, float("inf"))) - 1
    start_out, start_raw = segments[k]
    return start_raw + (i - start_out)


@dataclass(frozen=True)
class SpacedTagTemplate(Template):
    """``<thinking>…</thinking><answer>…</answer>`` as the OpenVLThinkerV2 authors check it: on the response
    with whitespace next to ``<``, ``>``, ``/`` squeezed out, the whole response must be one reasoning block,
    then an answer block, nothing else (the answer may be empty). The answer is the content of the LAST
    block, taken from the unsqueezed response (the authors read the first block of the squeezed text)."""

    think_tags: tuple[str, ...] = ("thinking",)

    def check_format(self, text: str) -> bool:
        s, _ = squeeze_tag_spaces(text)
        think_open, answer_close = f"<{self.think_tags[0]}>", f"</{self.answer_tag}>"
        joint = f"</{self.think_tags[0]}><{self.answer_tag}>"
        if not (s.startswith(think_open) and s.endswith(answer_close)):
            return False
        at = s.find(joint, len(think_open))  # the first join leaves the most room for the answer
        return at != -1 and at + len(joint) <= len(s) - len(answer_close)

    def extract_answer(self, text: str) -> str | None:
        s, segments = squeeze_tag_spaces(text)
        open_t, close_t = f"<{self.answer_tag}>", f"</{self.answer_tag}>"
        end = s.rfind(close_t)
        start = s.rfind(open_t, 0, end) if end != -1 else -1
        if start == -1:
            return None
        first = raw_index(segments, start + len(open_t) - 1) + 1  # just after the '>' of <answer>
        ans = text[first : raw_index(segments, end)].strip()
        return ans or None


TEMPLATES: dict[str, Template] = {}


def register_template(template: Template, *, overwrite: bool = False) -> Template:
    if template.name in TEMPLATES and not overwrite:
        raise ValueError(f"template {template.name!r} already registered")
    TEMPLATES[template.name] = template
    return template


register_template(Template("think_answer", think_tags=("think", "thinking"), answer="tag"))
register_template(Template("think_boxed", think_tags=("think",), answer="boxed"))
register_template(Template("answer", think_tags=(), answer="tag"))
register_template(Template("boxed", think_tags=(), answer="boxed"))
register_template(SpacedTagTemplate("openvlthinker_v2", answer="tag"))
register_template(LenientTemplate("lenient_choice", think_tags=(), answer="tag", fallback="choice"))
register_template(LenientTemplate("lenient_integer", think_tags=(), answer="tag", fallback="integer"))
register_template(LenientTemplate("lenient_box", think_tags=(), answer="tag", fallback="box"))

DEFAULT_TEMPLATE = "think_answer"


def get_template(template: str | Template | None) -> Template:
    if template is None:
        return TEMPLATES[DEFAULT_TEMPLATE]
    if isinstance(template, Template):
        return template
    try:
        return TEMPLATES[template]
    except (KeyError, TypeError):
        raise ValueError(f"unknown template {template!r}; known: {sorted(TEMPLATES)}") from None
