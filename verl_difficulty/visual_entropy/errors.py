"""The two exceptions of the visual-entropy command."""

from __future__ import annotations

__all__ = ["ImageRowError", "VisualEntropyError"]


class VisualEntropyError(RuntimeError):
    """A problem with the inputs or the settings; the message says what to do."""


class ImageRowError(VisualEntropyError):
    """``on_error="fail"``: a row's image could not be scored. Finished batches are kept for a rerun."""

    def __init__(self, row: int, image: int, error: str):
        super().__init__(f"row {row}, image {image}: {error} (finished batches are saved; rerun to resume, "
                         f"or use --on-error skip)")
        self.row, self.image, self.error = row, image, error
