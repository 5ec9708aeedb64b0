"""RefCOCO referring-expression grounding: Acc@0.5 (IoU of the predicted box with the annotated box >= 0.5)."""

from __future__ import annotations

from pathlib import Path

from .base import Benchmark
from .io import Sample, as_list, decode_image, read_rows
from .scoring import box_iou, parse_box

__all__ = ["REFCOCO", "BOX_FRAMES", "to_pixels"]

# How a model writes box coordinates: Qwen3-VL (OpenVLThinkerV2's base) on a 0-1000 grid relative to the image,
# Qwen2.5-VL in absolute pixels, lmms-eval's generic prompt in [0, 1].
BOX_FRAMES = ("norm1000", "pixel", "norm1")


def to_pixels(box: list[float], frame: str, width: int, height: int) -> list[float]:
    if frame == "pixel":
        return box
    scale = 1000.0 if frame == "norm1000" else 1.0
    return [box[0] / scale * width, box[1] / scale * height, box[2] / scale * width, box[3] / scale * height]


def load_refcoco(root: Path, split: str, limit: int | None) -> list[Sample]:
    """lmms-lab/RefCOCO: one row per object (``answer`` lists its referring expressions, ``bbox`` is COCO
    [x, y, w, h] in pixels); one sample per expression, as lmms-eval's bbox_rec task does."""
    rows = read_rows(root, split, ("question_id", "image", "answer", "bbox"), "refcoco", limit)
    out: list[Sample] = []
    for r in rows:
        image = decode_image(r["image"], root)
        x, y, w, h = (float(v) for v in r["bbox"])
        for k, expr in enumerate(as_list(r["answer"])):
            question = f"Please provide the bounding box coordinate of the region this sentence describes: {expr}"
            out.append(Sample(f"{r['question_id']}#{k}", question, [image], "spatial grounding", [x, y, x + w, y + h],
                              {"size": image.size}))
            if limit is not None and len(out) >= limit:
                return out
    return out


def make_refcoco_scorer(frame: str):
    if frame not in BOX_FRAMES:
        raise ValueError(f"box frame {frame!r}: expected one of {BOX_FRAMES}")

    def score(s: Sample, answer: str) -> float:
        box = parse_box(answer)
        if box is None:
            return 0.0
        width, height = s.meta["size"]
        return float(box_iou(to_pixels(box, frame, width, height), s.gold) >= 0.5)

    return score


REFCOCO = Benchmark(
    "refcoco", "RefCOCO", "lmms-lab/RefCOCO", "val", "Acc@0.5", True,
    "official Acc@0.5: IoU of the first box in the answer with the annotated box >= 0.5; the box read in the "
    "model's coordinate frame (--box-frame; OpenVLThinkerV2/Qwen3-VL: 0-1000 relative). The paper does not name "
    "its split here: val by default (--splits refcoco=testA ...)",
    load_refcoco, make_refcoco_scorer("norm1000"))
