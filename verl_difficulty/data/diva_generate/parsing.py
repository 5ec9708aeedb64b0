"""Parse and check one model output: paraphrases, think steps and their boxed answer; rehearsal fallbacks."""

from __future__ import annotations

import re

from verl_difficulty.data.diva_generate.prompts import FORMAT_EXAMPLE_TEXTS

PLACEHOLDER = re.compile(r"<image>|<video>|<audio>")  # the media placeholders verl pairs with a row's media


class ParseFailure(ValueError):
    """One model output fails a check; the message is the reason (the problem is asked again)."""


def _sections(text: str, tag: str, stop: str | None = None) -> dict[int, str]:
    """Numbered ``<tagN>...</tagN>`` bodies. A missing close tag ends the body at the next open tag, or at
    ``stop`` / the end of the text for the last one (models often drop the last close tag)."""
    opens = list(re.finditer(rf"<\s*{tag}\s*(\d+)\s*>", text, re.IGNORECASE))
    found: dict[int, str] = {}
    for i, match in enumerate(opens):
        end = opens[i + 1].start() if i + 1 < len(opens) else len(text)
        body = text[match.end():end]
        close = re.search(rf"<\s*/\s*{tag}\s*\d*\s*>", body, re.IGNORECASE)
        if close:
            body = body[:close.start()]
        elif stop and stop in body:
            body = body[:body.index(stop)]
        found.setdefault(int(match.group(1)), body)
    return found


def _numbered(sections: dict[int, str]) -> list[str]:
    """Bodies 1, 2, ... while consecutive (a gap ends the list, as in the authors' parser)."""
    out, n = [], 1
    while n in sections:
        out.append(_clean(sections[n]))
        n += 1
    return out


def _clean(body: str) -> str:
    body = body.strip()
    if body.startswith("[") and body.endswith("]") and body.count("[") == 1:  # the format's brackets copied
        body = body[1:-1].strip()
    return body


def norm_text(text: str) -> str:
    return " ".join(text.casefold().replace("$", " ").split())


def _is_format_example(text: str) -> bool:
    norm = norm_text(text)
    return norm in FORMAT_EXAMPLE_TEXTS or bool(re.fullmatch(r"\w+ variant's full text", norm))


def _mentions(text: str, answer: str) -> bool:
    """Whether ``answer`` occurs in ``text`` as a whole token sequence (case and spacing ignored)."""
    needle = norm_text(answer)
    if not needle:
        return False
    return re.search(rf"(?<![0-9a-z]){re.escape(needle)}(?![0-9a-z])", norm_text(text)) is not None


def check_paraphrase(candidate: str, question: str, answer: str | None) -> tuple[str, bool]:
    """(the paraphrase to keep, whether its placeholders were restored); raises ParseFailure with the reason.

    Checks: not empty, not the format example, not the question itself, no ``\\boxed{}`` (a solution, not a
    question), the answer not stated when the question does not state it, and the question's media placeholders:
    the same ones, or none (then they are put in front, as DivaDataset would); any other count is refused.
    """
    if not candidate.strip():
        raise ParseFailure("empty paraphrase")
    if _is_format_example(candidate):
        raise ParseFailure("paraphrase copies the format example")
    if norm_text(PLACEHOLDER.sub("", candidate)) == norm_text(PLACEHOLDER.sub("", question)):
        raise ParseFailure("paraphrase repeats the question")
    if "\\boxed" in candidate:
        raise ParseFailure("paraphrase contains a \\boxed{} answer")
    if answer is not None and _mentions(candidate, answer) and not _mentions(question, answer):
        raise ParseFailure("paraphrase states the answer")
    wanted, got = PLACEHOLDER.findall(question), PLACEHOLDER.findall(candidate)
    if got == wanted:
        return candidate, False
    if not got:
        return "".join(wanted) + candidate, True
    raise ParseFailure(f"paraphrase has {len(got)} media placeholders, the question {len(wanted)}")


def parse_paraphrases(text: str, question: str, answer: str | None) -> tuple[list[str], list[str], int]:
    """(accepted paraphrases in order, rejection reasons, placeholders restored) from one paraphrase output."""
    accepted, reasons, restored = [], [], 0
    seen = {norm_text(question)}
    for body in _numbered(_sections(text, "variant")):
        try:
            paraphrase, fixed = check_paraphrase(body, question, answer)
        except ParseFailure as failure:
            reasons.append(str(failure))
            continue
        key = norm_text(paraphrase)
        if key in seen:
            reasons.append("duplicate paraphrase")
            continue
        seen.add(key)
        accepted.append(paraphrase)
        restored += fixed
    if not accepted and not reasons:
        reasons.append("no <variant1> tag")
    return accepted, reasons, restored


def _step_text(body: str) -> str:
    # hints are appended to the user message: a placeholder there would ask verl for an image the row lacks
    return PLACEHOLDER.sub(lambda m: "the " + m.group(0).strip("<>"), body)


def parse_think_steps(text: str, min_steps: int, max_steps: int) -> tuple[list[str], str | None]:
    """(steps, the last ``\\boxed{}`` answer or None); raises ParseFailure. Steps are ``<step1>`` ... tags
    (unnumbered ``<step>`` tags are accepted too); their count must be within [min_steps, max_steps]."""
    from verl_difficulty.rewards.templates import extract_boxed

    steps = _numbered(_sections(text, "step", stop="\\boxed"))
    if not steps:
        steps = [_clean(b) for b in re.findall(r"<\s*step\s*>(.*?)<\s*/\s*step\s*>", text, re.I | re.S)]
    if not steps:
        raise ParseFailure("no <step1> tag")
    if not min_steps <= len(steps) <= max_steps:
        raise ParseFailure(f"{len(steps)} steps, expected {min_steps}-{max_steps}")
    for k, step in enumerate(steps, 1):
        if not step:
            raise ParseFailure(f"step {k} is empty")
        if _is_format_example(step):
            raise ParseFailure("think steps copy the format example")
    return [_step_text(step) for step in steps], extract_boxed(text)


def check_answer(predicted: str | None, answer: str | None, mode: str) -> None:
    """Raise ParseFailure unless the steps' boxed answer matches the ground truth (mode math | exact | none)."""
    if mode == "none":
        return
    if predicted is None or not predicted.strip():
        raise ParseFailure("no \\boxed{} answer after the steps")
    if mode == "exact":  # the authors' rule: stripped strings equal
        same = predicted.strip() == str(answer).strip()
    else:
        from verl_difficulty.rewards.scorers import score_math

        same = score_math(f"\\boxed{{{predicted}}}", answer, template="boxed").acc == 1.0
    if not same:
        raise ParseFailure("boxed answer does not match the ground truth")


def _words(text: str) -> list[str]:
    return re.sub(r"</?\s*(?:variant|step)\s*\d*\s*>", " ", PLACEHOLDER.sub(" ", text), flags=re.I).split()


def _chunks(words: list[str], n: int) -> list[str]:
    """``words`` cut into ``n`` non-empty, near-equal runs (``words`` repeated when too short)."""
    while len(words) < n:
        words = words + words
    bounds = [round(i * len(words) / n) for i in range(n + 1)]
    return [" ".join(words[bounds[i]:bounds[i + 1]]) for i in range(n)]


def lenient_paraphrases(text: str, question: str, missing: int) -> list[str]:
    """Rehearsal fallback: ``missing`` paraphrases cut from the raw output (the question's words if empty)."""
    words = _words(text) or _words(question) or ["question"]
    lead = "".join(PLACEHOLDER.findall(question))
    return [lead + chunk for chunk in _chunks(words, missing)]


def lenient_think_steps(text: str, question: str, min_steps: int) -> list[str]:
    """Rehearsal fallback: ``min_steps`` steps cut from the raw output (the question's words if empty)."""
    return _chunks(_words(text) or _words(question) or ["step"], min_steps)
