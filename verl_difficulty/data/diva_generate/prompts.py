"""The DIVA-GRPO authors' generation prompts: K paraphrases in ``<variantN>`` tags, think steps in ``<stepN>`` tags."""

from __future__ import annotations

# The wording of the DIVA-GRPO authors' prompts (DIVA_GRPO_release, verl/difficulty_variation/llm_client.py:
# PROMPT_VARIANTS, PROMPT_THINK_STEP_INIT and their system message). The variant count and the step range are
# parameters here; K = 5 and 3-5 steps render the authors' text exactly.

SYSTEM_PROMPT = "You are a helpful assistant."
_ORDINALS = ("First", "Second", "Third", "Fourth", "Fifth", "Sixth", "Seventh", "Eighth", "Ninth", "Tenth")
_STEP_EXAMPLES = {
    "observe": "[Focus on the observation of the image, describe in detail the information present in the diagram]",
    "theorems": "[Consider what mathematical theorems are available + Logical inference from step1 + text "
                "information and image details]",
    "continue": "[Logical inference continues]",
    "conclude": "[Key conclusion leading to answer]",
}
FORMAT_EXAMPLE_TEXTS = {text.strip("[]").casefold() for text in _STEP_EXAMPLES.values()}


def _ordinal(i: int) -> str:
    return _ORDINALS[i - 1] if i <= len(_ORDINALS) else f"{i}th"


def paraphrase_prompt(num_paraphrases: int) -> str:
    """The user prompt asking for ``num_paraphrases`` rewordings; the question follows it directly."""
    k = num_paraphrases
    shown = list(range(1, k + 1)) if k <= 3 else [1, 2, None, k]  # the authors list 1, 2, "...", 5
    lines = ["...  " if i is None else f"<variant{i}>[{_ordinal(i)} variant's full text]</variant{i}>  "
             for i in shown]
    return (f"Generate {k} distinct variant{'s' if k > 1 else ''} of the following problem that:  \n"
            "1. Preserve the **exact same correct answer** as the original.  \n"
            "2. Use **significantly different wording, sentence structure**\n"
            "3. You can adjust the sentence length\u2014either making it concise or extending it\u2014but must "
            "ensure correctness.\n"
            "4. Format of variants as, include <image> in the variants if original has it:  \n"
            + "\n".join(lines) + "\n**Original Problem:**\n")


def _example_steps(n: int) -> list[str]:
    if n == 1:
        return [_STEP_EXAMPLES["conclude"]]
    head = [_STEP_EXAMPLES["observe"]] + ([_STEP_EXAMPLES["theorems"]] if n > 2 else [])
    return head + [_STEP_EXAMPLES["continue"]] * (n - 1 - len(head)) + [_STEP_EXAMPLES["conclude"]]


def think_step_prompt(min_steps: int, max_steps: int) -> str:
    """The instruction part of the think-step request ("Problem: ..." and the images follow it)."""
    count = f"{min_steps}-{max_steps} steps" if min_steps < max_steps else f"{min_steps} step{'s' * (min_steps > 1)}"
    example_n = min(max(4, min_steps), max_steps)  # the authors show 4 steps
    example = "\n".join(f"<step{i}> {text} </step{i}>" for i, text in enumerate(_example_steps(example_n), 1))
    return ("You are a mathematician, statistician, and geometer. Below, I will present you with a math problem "
            "along with its accompanying diagram (if any).\n"
            "Given the text, images, generate a step-by-step reasoning process that logically leads to the correct "
            "result in the \\boxed{}. Requirements:\n"
            f"Flexible step count ({count}): Use only as many steps as needed. Label them clearly with <step1>, "
            "<step2>, etc.\n"
            "Strict dependency on input: Base reasoning only on the provided text and images.\n"
            "Image reference: Must incorporate details from the image, not just text.\n"
            "Logical rigor: Ensure each step coherently supports the next.\n"
            "Please ensure that the thought process is broken down into steps and enclosed within <step></step>.\n"
            f"Format (example with {example_n} steps):\n{example}\n\\boxed{{[final answer]}}\n")
