"""Tiny fixtures of every benchmark in its published layout (field names, types, file names, image structs),
with synthetic PNG images: for tests and for a recipe's rehearsal of its evaluation step.

``write_fixtures(root)`` writes ``root/<benchmark>/...`` for all benchmarks; ``KNOWN_ANSWERS`` lists, per
benchmark, final answers with the score the benchmark's rule must give them (sample index, answer, score).

    python -m verl_difficulty.eval.fixtures DIR     # then: python -m verl_difficulty.eval --data-root DIR ...
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

__all__ = ["write_fixtures", "KNOWN_ANSWERS", "RIGHT_ANSWERS", "IMAGE_SIZE"]

IMAGE_SIZE = 56  # a multiple of 28: Qwen2.5-VL's processor keeps it as is


def _png(seed: int) -> dict:
    """A small synthetic picture as the ``datasets`` Image feature stores it in parquet."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    colour = ((seed * 70) % 256, (seed * 130 + 60) % 256, (seed * 200 + 120) % 256)
    draw.rectangle([14, 14, 41, 41], fill=colour)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return {"bytes": buf.getvalue(), "path": f"{seed}.png"}


def _write(path: Path, rows: list[dict], image_cols: tuple[str, ...] = ()) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    fields = []
    for col in rows[0]:
        typ = image_type if col in image_cols else pa.array([r[col] for r in rows]).type
        fields.append(pa.field(col, pa.string() if pa.types.is_null(typ) else typ))
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=pa.schema(fields)), path)


def _shard(split: str) -> str:
    return f"{split}-00000-of-00001.parquet"


def _mathvista(root: Path) -> None:
    hint_int = "Hint: Please answer the question requiring an integer answer and provide the final value, e.g., 1, 2, 3, at the end.\n"  # noqa: E501
    hint_float = ("Hint: Please answer the question requiring a floating-point number with one decimal place and "
                  "provide the final value, e.g., 1.2, 1.3, 1.4, at the end.\n")
    hint_mc = "Hint: Please answer the question and provide the correct option letter, e.g., A, B, C, D, at the end.\n"
    meta = {"category": "math-targeted-vqa", "context": "synthetic scene", "grade": "elementary school",
            "img_height": IMAGE_SIZE, "img_width": IMAGE_SIZE, "language": "english",
            "skills": ["arithmetic reasoning"],
            "source": "synthetic", "split": "testmini", "task": "math word problem"}
    rows = [
        {"pid": "1", "question": "How many squares are there?", "image": "images/1.jpg", "decoded_image": _png(1),
         "choices": None, "unit": None, "precision": None, "answer": "3", "question_type": "free_form",
         "answer_type": "integer", "metadata": meta, "query": hint_int + "Question: How many squares are there?"},
        {"pid": "2", "question": "What colour is the square?", "image": "images/2.jpg", "decoded_image": _png(2),
         "choices": ["red", "green", "blue"], "unit": None, "precision": None, "answer": "green",
         "question_type": "multi_choice", "answer_type": "text", "metadata": meta,
         "query": hint_mc + "Question: What colour is the square?\nChoices:\n(A) red\n(B) green\n(C) blue"},
        {"pid": "3", "question": "What is the side length?", "image": "images/3.jpg", "decoded_image": _png(3),
         "choices": None, "unit": "cm", "precision": 1.0, "answer": "1.5", "question_type": "free_form",
         "answer_type": "float", "metadata": meta, "query": hint_float + "Question: What is the side length?"},
    ]
    _write(root / "mathvista/data" / _shard("testmini"), rows, ("decoded_image",))


def _mathverse(root: Path) -> None:
    base = {"metadata": {"split": "testmini", "source": "synthetic", "subject": "Plane Geometry",
                         "subfield": "Length"}, "query_wo": "", "query_cot": "", "question_for_eval": ""}
    rows = [
        {"sample_index": "1", "problem_index": "1", "problem_version": "Text Dominant",
         "question": "Which is the length?\nChoices:\nA:1\nB:2\nC:3", "image": _png(4), "answer": "B",
         "question_type": "multi-choice", **base},
        {"sample_index": "2", "problem_index": "2", "problem_version": "Vision Only", "question": "", "image": _png(5),
         "answer": "\\frac{1}{2}", "question_type": "free-form", **base},
    ]
    _write(root / "mathverse" / _shard("testmini"), rows, ("image",))


def _mathvision(root: Path) -> None:
    rows = [
        {"id": "1", "question": "<image1>\nWhich shape is red?", "options": ["1", "2", "3", "4", "5"],
         "image": "images/1.jpg", "decoded_image": _png(6), "answer": "C", "solution": None, "level": 2,
         "subject": "metric geometry - area"},
        {"id": "2", "question": "<image1>\nHow many dots?", "options": [], "image": "images/2.jpg",
         "decoded_image": _png(7), "answer": "12", "solution": None, "level": 1, "subject": "counting"},
    ]
    _write(root / "mathvision/data" / _shard("test"), rows, ("decoded_image",))


def _wemath(root: Path) -> None:
    rows = [
        {"ID": "1-1", "split": "testmini", "knowledge concept": "Area of rectangles",
         "question": "What is the area?", "option": "A. 3; B. 4; C. 5", "answer": "B", "key": "2steps_1",
         "question number": 1, "knowledge concept description": "", "image_path": _png(8)},
        {"ID": "1-2", "split": "testmini", "knowledge concept": "Perimeter", "question": "What is the perimeter?",
         "option": "A. 8; B. 10; C. 12", "answer": "A", "key": "2steps_2", "question number": 2,
         "knowledge concept description": "", "image_path": _png(9)},
    ]
    _write(root / "wemath" / _shard("testmini"), rows, ("image_path",))


def _olympiadbench(root: Path) -> None:
    common = {"solution": ["..."], "context": None, "image_2": None, "image_3": None, "image_4": None,
              "image_5": None, "modality": "Multimodal", "difficulty": "Competition", "unit": None,
              "answer_type": "Numerical", "error": None, "question_type": "Open-ended", "subfield": "Geometry",
              "subject": "Math", "language": "English"}
    rows = [
        {"id": 1, "question": "Find the diagonal of the unit square.", "final_answer": ["$\\sqrt{2}$"],
         "image_1": _png(10), "is_multiple_answer": False, **common},
        {"id": 2, "question": "Find the two side lengths.", "final_answer": ["$3$", "$4$"], "image_1": _png(11),
         "is_multiple_answer": True, **common},
    ]
    _write(root / "olympiadbench/OE_MM_maths_en_COMP" / _shard("train"), rows,
           ("image_1", "image_2", "image_3", "image_4", "image_5"))


def _mmk12(root: Path) -> None:
    rows = [
        {"id": "mmk12-1", "subject": "math", "image": _png(12), "question": "What is 2 + 3?", "answer": "5"},
        {"id": "mmk12-2", "subject": "physics", "image": _png(13),
         "question": "Which force acts? A. gravity B. none C. friction D. lift", "answer": "C"},
    ]
    _write(root / "mmk12/data" / _shard("test"), rows, ("image",))


def _mmmu(root: Path) -> None:
    def row(i, subject, question, options, answer, qtype):
        r = {"id": f"validation_{subject}_{i}", "question": question, "options": options, "explanation": "",
             "image_1": _png(14 + i)}
        r.update({f"image_{k}": None for k in range(2, 8)})
        r.update({"img_type": "['Diagrams']", "answer": answer, "topic_difficulty": "Easy", "question_type": qtype,
                  "subfield": subject})
        return r

    _write(root / "mmmu/Accounting" / _shard("validation"),
           [row(1, "Accounting", "<image 1> Which number is shown?", "['1', '2', '3', '4']", "B", "multiple-choice")],
           tuple(f"image_{k}" for k in range(1, 8)))
    _write(root / "mmmu/Math" / _shard("validation"),
           [row(2, "Math", "<image 1> What is the area?", "[]", "7.5", "open")],
           tuple(f"image_{k}" for k in range(1, 8)))


def _chartqa(root: Path) -> None:
    rows = [
        {"type": "human_test", "question": "What is the highest value?", "answer": "42", "image": _png(20)},
        {"type": "augmented_test", "question": "Is the bar blue?", "answer": "Yes", "image": _png(21)},
    ]
    _write(root / "chartqa/data" / _shard("test"), rows, ("image",))


def _charxiv(root: Path) -> None:
    def row(i, q, a):
        return {"image": _png(22 + i), "category": "cs", "year": "2023", "original_figure_path": f"{i}.jpg",
                "original_id": str(i), "figure_path": f"images/{i}.jpg", "num_subplots": 1, "subplot_row": 1,
                "subplot_col": 1, "subplot_loc": None, "descriptive_q1": 1, "descriptive_a1": "x",
                "reasoning_q": q, "reasoning_a": a, "reasoning_a_type": 3, "reasoning_q_source": 1}

    _write(root / "charxiv/data" / _shard("validation"),
           [row(1, "What is the slope of the line?", "0.25"), row(2, "Which line is highest?", "Blue line")],
           ("image",))


def _docvqa(root: Path) -> None:
    rows = [
        {"questionId": "101", "question": "What is the company name?", "question_types": ["layout"],
         "image": _png(30), "docId": 1, "ucsf_document_id": "abc1", "ucsf_document_page_no": "1",
         "answers": ["ITC Limited", "ITC"], "data_split": "val"},
        {"questionId": "102", "question": "What is the date?", "question_types": ["form"], "image": _png(31),
         "docId": 2, "ucsf_document_id": "abc2", "ucsf_document_page_no": "1", "answers": ["May 5, 1998"],
         "data_split": "val"},
    ]
    _write(root / "docvqa/DocVQA" / _shard("validation"), rows, ("image",))


def _ocrbench(root: Path) -> None:
    rows = [
        {"dataset": "IIIT5K", "question": "what is written in the image?", "question_type": "Regular Text Recognition",
         "answer": ["CENTRAL"], "image": _png(32)},
        {"dataset": "HME100k", "question": "Please write out the expression of the formula in the image using LaTeX "
         "format.", "question_type": "Handwritten Mathematical Expression Recognition", "answer": ["x^{2}+1"],
         "image": _png(33)},
    ]
    _write(root / "ocrbench/data" / _shard("test"), rows, ("image",))


def _refcoco(root: Path) -> None:
    rows = [{"question_id": "1001", "image": _png(34),
             "question": "Please carefully observe the area circled in the image and come up with a caption for "
                         "the area.",
             "answer": ["the coloured square", "square in the middle"], "segmentation": [14.0, 14.0, 41.0, 41.0],
             "bbox": [14.0, 14.0, 28.0, 28.0], "iscrowd": 0, "file_name": "COCO_train2014_000000001001.jpg"}]
    _write(root / "refcoco/data" / _shard("val"), rows, ("image",))


def _hallusionbench(root: Path) -> None:
    def row(fig, qid, q, gt):
        return {"category": "VS", "subcategory": "chart", "visual_input": "1", "set_id": "0", "figure_id": fig,
                "sample_note": "", "question_id": qid, "question": q, "gt_answer_details": "", "gt_answer": gt,
                "filename": f"VS/chart/0_{fig}.png", "image": _png(40 + int(fig) * 2 + int(qid))}

    rows = [row("0", "0", "Is the square red?", "1"), row("0", "1", "Is the square blue?", "0"),
            row("1", "0", "Is the square red?", "0")]
    _write(root / "hallusionbench/data" / _shard("image"), rows, ("image",))


_WRITERS = {"mathvista": _mathvista, "mathverse": _mathverse, "mathvision": _mathvision, "wemath": _wemath,
            "olympiadbench": _olympiadbench, "mmk12": _mmk12, "mmmu": _mmmu, "chartqa": _chartqa,
            "charxiv": _charxiv, "docvqa": _docvqa, "ocrbench": _ocrbench, "refcoco": _refcoco,
            "hallusionbench": _hallusionbench}

# (sample index after loading, final answer, the score the benchmark's rule gives it). Sample order: the rows
# above (MMMU: subject folders in sorted order; RefCOCO: one sample per expression).
KNOWN_ANSWERS: dict[str, list[tuple[int, str, float]]] = {
    "mathvista": [(0, "3", 1.0), (0, "3.0", 1.0), (0, "4", 0.0), (1, "B", 1.0), (1, "green", 1.0), (1, "(A)", 0.0),
                  (2, "1.5", 1.0), (2, "1.54", 1.0), (2, "1.6", 0.0)],
    "mathverse": [(0, "B", 1.0), (0, "B:2", 1.0), (0, "C", 0.0), (1, "0.5", 1.0), (1, "\\frac{1}{2}", 1.0),
                  (1, "\\frac{1}{3}", 0.0)],
    "mathvision": [(0, "C", 1.0), (0, "(C) 3", 1.0), (0, "3", 1.0), (0, "D", 0.0), (1, "12", 1.0), (1, "13", 0.0)],
    "wemath": [(0, "B", 1.0), (0, "B. 4", 1.0), (0, "A", 0.0), (1, "A", 1.0), (1, "C", 0.0)],
    "olympiadbench": [(0, "\\sqrt{2}", 1.0), (0, "2^{1/2}", 1.0), (0, "1.5", 0.0), (1, "3, 4", 1.0),
                      (1, "4, 3", 0.0), (1, "3", 0.0)],
    "mmk12": [(0, "5", 1.0), (0, "6", 0.0), (1, "C", 1.0), (1, "A", 0.0)],
    "mmmu": [(0, "B", 1.0), (0, "2", 1.0), (0, "C", 0.0), (1, "7.5", 1.0), (1, "7.50", 1.0), (1, "7.49", 0.0)],
    "chartqa": [(0, "42", 1.0), (0, "43", 1.0), (0, "45", 0.0), (1, "yes", 1.0), (1, "no", 0.0)],
    "charxiv": [(0, "0.25", 1.0), (0, "1/4", 1.0), (0, "0.3", 0.0), (1, "blue line", 1.0), (1, "red line", 0.0)],
    "docvqa": [(0, "itc limited", 1.0), (0, "ITC Limted", 1.0 - 1 / 11), (0, "Acme Corp", 0.0),
               (1, "May 5, 1998", 1.0)],
    "ocrbench": [(0, "central", 1.0), (0, "The word is CENTRAL.", 1.0), (0, "centre", 0.0),
                 (1, "x ^ { 2 } + 1", 1.0), (1, "x^{3}+1", 0.0)],
    "refcoco": [(0, '{"boxes": [250, 250, 750, 750]}', 1.0), (1, "[300, 300, 750, 750]", 1.0),
                (0, '{"boxes": [0, 0, 200, 200]}', 0.0), (0, "no box", 0.0)],
    "hallusionbench": [(0, "Yes", 1.0), (0, "No, it is not.", 0.0), (1, "no", 1.0), (2, "yes", 0.0)],
}

# one right final answer per sample, for a generator that answers perfectly
RIGHT_ANSWERS: dict[str, list[str]] = {
    "mathvista": ["3", "B", "1.5"], "mathverse": ["B", "0.5"], "mathvision": ["C", "12"], "wemath": ["B", "A"],
    "olympiadbench": ["\\sqrt{2}", "3, 4"], "mmk12": ["5", "C"], "mmmu": ["B", "7.5"], "chartqa": ["42", "Yes"],
    "charxiv": ["0.25", "Blue line"], "docvqa": ["ITC Limited", "May 5, 1998"], "ocrbench": ["CENTRAL", "x^{2}+1"],
    "refcoco": ['{"boxes": [250, 250, 750, 750]}', '{"boxes": [250, 250, 750, 750]}'],
    "hallusionbench": ["yes", "no", "no"],
}


def write_fixtures(root: str | Path, benchmarks: list[str] | None = None) -> Path:
    """Write the fixtures of ``benchmarks`` (default: all) under ``root``; returns ``root``."""
    root = Path(root)
    for name in benchmarks or list(_WRITERS):
        if name not in _WRITERS:
            raise ValueError(f"no fixture for benchmark {name!r}; known: {sorted(_WRITERS)}")
        _WRITERS[name](root)
    return root


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m verl_difficulty.eval.fixtures OUT_DIR")
    print(write_fixtures(sys.argv[1]))
