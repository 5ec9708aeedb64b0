"""Answer templates: a format check and an answer extractor per recipe.

A template is a small frozen dataclass; ``get_template(name)`` looks one up in a registry, and
``register_template`` adds one. Everything here is linear in the response length (``str.find`` /
``str.rfind`` and one brace scan), no regular expressions with backtracking on model output.

Built-in templates:

- ``think_answer`` (default, OpenVLThinkerV2 paper): ``<think>…</think>`` or ``<thinking>…</thinking>``
  then ``<answer>…</answer>`` and nothing else.
- ``think_boxed`` (Durian / DIVA-GRPO): ``<think>…</think>`` then text containing ``\\boxed{…}``;
  the answer is the content of the LAST ``\\boxed{}``.
- ``answer`` / ``boxed``: the same answers without the reasoning block.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Template", "TEMPLATES", "get_template", "register_template", "extract_boxed"]

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
