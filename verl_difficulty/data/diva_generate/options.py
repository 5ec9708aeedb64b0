"""The settings of one generation run and the error every stage raises for an unusable input or option."""

from __future__ import annotations

import dataclasses


class DivaGenerateError(ValueError):
    """The input, the output or an option cannot be used; the message names it and the fix."""


@dataclasses.dataclass
class GenerateOptions:
    num_paraphrases: int = 5  # the authors' prompt asks for 5
    min_paraphrases: int | None = None  # fewer valid ones after the last attempt: the row fails (None: all K)
    min_steps: int = 3  # the authors' prompt: "Flexible step count (3-5 steps)"
    max_steps: int = 5
    think_steps: bool = True
    max_attempts: int = 3
    verify_answer: str = "math"  # math | exact (the authors' check) | none
    lenient: bool = False
    use_images: bool = True  # send the row's images with the think-step request when the backend takes images
    batch_size: int = 8  # problems per batch; each finished batch is appended and fsync'd
    seed: int = 0
    problem_id_key: str = "problem_id"
    question_key: str = "question"
    image_key: str = "images"
    limit: int | None = None  # at most this many problems this run

    def __post_init__(self):
        # "extra_info.problem_id" and "problem_id" name the same field
        self.problem_id_key = self.problem_id_key.removeprefix("extra_info.")
        self.question_key = self.question_key.removeprefix("extra_info.")

    @property
    def wanted_paraphrases(self) -> int:
        return self.num_paraphrases if self.min_paraphrases is None else self.min_paraphrases

    def validate(self) -> None:
        problems = []
        if self.num_paraphrases < 0:
            problems.append(f"num_paraphrases must be >= 0, got {self.num_paraphrases}")
        if not 0 <= self.wanted_paraphrases <= self.num_paraphrases:
            problems.append(f"min_paraphrases must be in 0..num_paraphrases ({self.num_paraphrases}), "
                            f"got {self.min_paraphrases}")
        if not 1 <= self.min_steps <= self.max_steps:
            problems.append(f"need 1 <= min_steps <= max_steps, got {self.min_steps}, {self.max_steps}")
        if not self.num_paraphrases and not self.think_steps:
            problems.append("nothing to generate: num_paraphrases is 0 and think steps are off")
        if self.max_attempts < 1:
            problems.append(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.batch_size < 1:
            problems.append(f"batch_size must be >= 1, got {self.batch_size}")
        if self.verify_answer not in ("math", "exact", "none"):
            problems.append(f"verify_answer must be math, exact or none, got {self.verify_answer!r}")
        if self.limit is not None and self.limit < 0:
            problems.append(f"limit must be >= 0, got {self.limit}")
        if problems:
            raise DivaGenerateError("; ".join(problems))

    def settings(self) -> dict:
        """What shapes the written assets: a resumed run must use the same."""
        return {"num_paraphrases": self.num_paraphrases, "min_paraphrases": self.wanted_paraphrases,
                "min_steps": self.min_steps, "max_steps": self.max_steps, "think_steps": self.think_steps,
                "verify_answer": self.verify_answer, "lenient": self.lenient, "use_images": self.use_images,
                "problem_id_key": self.problem_id_key, "question_key": self.question_key}
