"""The shared image helpers (one decoder, one smart_resize) and the HF feature-metadata sync."""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pytest
from PIL import Image

from verl_difficulty.eval.io import EvalDataError
from verl_difficulty.eval.io import decode_image as eval_decode_image
from verl_difficulty.hf_features import with_hf_features
from verl_difficulty.images import decode_image, smart_resize


def _png(colour) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (20, 10), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def test_smart_resize_refuses_extreme_aspect_unless_asked():
    assert smart_resize(100, 150, 14, 56 * 56, 10**9) == (98, 154)
    assert smart_resize(1000, 700, 14, 56 * 56, 200 * 200) == (238, 154)  # shrunk to the bound, aspect kept
    with pytest.raises(ValueError, match="aspect ratio"):
        smart_resize(14, 14 * 300, 14, 56 * 56, 10**9)
    h, w = smart_resize(14, 14 * 300, 14, 56 * 56, 10**9, max_ratio=None)
    assert h == 14 and w == 14 * 300


def test_one_decoder_for_paths_relative_to_a_base(tmp_path):
    (tmp_path / "a.png").write_bytes(_png((255, 0, 0)))
    assert decode_image("a.png", base=tmp_path).getpixel((0, 0)) == (255, 0, 0)
    assert decode_image({"bytes": b"", "path": str(tmp_path / "a.png")}).size == (20, 10)  # empty bytes: the path
    with pytest.raises(FileNotFoundError, match="b.png not found"):
        decode_image("b.png", base=tmp_path)
    # the evaluation readers: same decoder, None for an empty struct, their own error naming the file
    assert eval_decode_image({"bytes": None, "path": None}) is None
    assert eval_decode_image({"bytes": _png((0, 0, 255)), "path": "x.png"}).getpixel((1, 1)) == (0, 0, 255)
    with pytest.raises(EvalDataError, match="b.png not found"):
        eval_decode_image("b.png", tmp_path)


def test_hf_features_follow_the_arrow_type():
    spec = {"info": {"features": {"extra_info": {"label": {"names": ["a", "b"], "_type": "ClassLabel"},
                                                 "old": {"dtype": "string", "_type": "Value"},
                                                 "paraphrases": {"dtype": "null", "_type": "Value"}}}}}
    info = pa.array([{"label": 1, "paraphrases": ["x"], "new": 0.5}],
                    pa.struct([("label", pa.int64()), ("paraphrases", pa.list_(pa.string())), ("new", pa.float64())]))
    table = pa.table({"extra_info": info}).replace_schema_metadata({"huggingface": json.dumps(spec)})
    features = json.loads(with_hf_features(table, ["paraphrases"]).schema.metadata[b"huggingface"])
    assert features["info"]["features"]["extra_info"] == {
        "label": {"names": ["a", "b"], "_type": "ClassLabel"},  # declared and unchanged: kept
        "paraphrases": {"feature": {"dtype": "string", "_type": "Value"}, "_type": "List"},  # changed: inferred
        "new": {"dtype": "float64", "_type": "Value"},  # undeclared: inferred; "old" is gone with its field
    }
    bare = pa.table({"extra_info": info})
    assert with_hf_features(bare, ["paraphrases"]) is bare  # no metadata: nothing to keep in step
