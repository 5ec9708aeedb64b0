"""Durian's perceptual complexity: the spectral-entropy math, both backends, and the resumable command."""

from __future__ import annotations

import base64
import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from verl_difficulty import visual_entropy as ve
from verl_difficulty.core.spectral import (
    FLAT_RTOL,
    covariance_eigenvalues,
    entropy_from_eigenvalues,
    spectral_entropies,
    spectral_entropy,
)
from verl_difficulty.cpu.tiny_models import write_vl_checkpoint
from verl_difficulty.images import smart_resize

ROOT = Path(__file__).resolve().parents[2]
SIDE = 112  # a multiple of 14: the pixel backend does not resample, so the reference below needs no bicubic


# ------------------------------------------------------------------------------ references from the spec


def reference_entropy(features: np.ndarray) -> float:
    """The spec, literally: centre, SVD, λ = σ²/(P−1), p = λ/Σλ, H = −Σ p log p (numpy, float64)."""
    features = np.asarray(features, dtype=np.float64)
    if features.shape[0] < 2:
        return 0.0
    centred = features - features.mean(axis=0)
    lam = np.linalg.svd(centred, compute_uv=False) ** 2 / (features.shape[0] - 1)
    if np.linalg.norm(centred) <= FLAT_RTOL * np.linalg.norm(features):  # flat, up to float noise (documented)
        return 0.0
    p = lam / lam.sum()
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def reference_pixel_entropy(image: Image.Image) -> float:
    """14×14×3 patches cut by hand (channel-major, like Qwen's patcher), sides already multiples of 14."""
    a = np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0
    h, w, _ = a.shape
    assert h % 14 == 0 and w % 14 == 0
    patches = [a[i:i + 14, j:j + 14].transpose(2, 0, 1).ravel() for i in range(0, h, 14) for j in range(0, w, 14)]
    return reference_entropy(np.stack(patches))


# ------------------------------------------------------------------------------------------ the math


def test_hand_computed_example():
    # Rows ±(√3, 0), ±(0, 1): mean 0, covariance diag(2·3, 2·1)/3 = diag(2, 2/3), so p = (3/4, 1/4).
    f = torch.tensor([[3 ** 0.5, 0.0], [-(3 ** 0.5), 0.0], [0.0, 1.0], [0.0, -1.0]], dtype=torch.float64)
    assert torch.allclose(covariance_eigenvalues(f).sort().values, torch.tensor([2 / 3, 2.0], dtype=torch.float64))
    expected = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert spectral_entropy(f) == pytest.approx(expected, abs=1e-12)
    assert spectral_entropy(f) == pytest.approx(reference_entropy(f.numpy()), abs=1e-12)


def test_degenerate_inputs_score_zero():
    g = torch.Generator().manual_seed(0)
    rank_one = torch.outer(torch.randn(50, generator=g), torch.randn(7, generator=g)) + 3.0
    assert spectral_entropy(rank_one) == 0.0
    assert spectral_entropy(torch.outer(torch.randn(5, generator=g), torch.randn(70, generator=g))) == 0.0
    assert spectral_entropy(torch.full((20, 9), 0.3)) == 0.0  # flat: Σλ == 0 (up to round-off of the mean)
    assert spectral_entropy(torch.zeros(6, 4)) == 0.0
    assert spectral_entropy(torch.randn(1, 8, generator=g)) == 0.0  # P < 2
    assert entropy_from_eigenvalues(torch.zeros(3, dtype=torch.float64)).item() == 0.0


@pytest.mark.parametrize("k", [1, 2, 5, 16])
def test_isotropic_data_reaches_log_k(k):
    exact = torch.cat([torch.eye(k), -torch.eye(k)])  # covariance exactly ∝ I_k
    assert spectral_entropy(exact) == pytest.approx(math.log(k), abs=1e-12)
    gaussian = torch.randn(20000, k, generator=torch.Generator().manual_seed(k), dtype=torch.float64)
    assert spectral_entropy(gaussian) == pytest.approx(math.log(k), abs=2e-3)
    assert spectral_entropy(gaussian) <= math.log(k) + 1e-12


@settings(max_examples=60, deadline=None)
@given(rows=st.integers(2, 24), cols=st.integers(1, 12), seed=st.integers(0, 2**31 - 1),
       scale=st.floats(1e-3, 1e3), shift=st.floats(-10, 10))
def test_invariances_and_bounds(rows, cols, seed, scale, shift):
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(rows, cols, generator=g, dtype=torch.float64)
    h = spectral_entropy(f)
    assert 0.0 <= h <= math.log(min(rows - 1, cols)) + 1e-9
    assert h == pytest.approx(reference_entropy(f.numpy()), abs=1e-9)
    assert spectral_entropy(f * scale) == pytest.approx(h, abs=1e-9)  # scale invariance
    column_shift = shift * torch.randn(cols, generator=g, dtype=torch.float64)
    assert spectral_entropy(f + column_shift) == pytest.approx(h, abs=1e-9)  # same offset added to every row
    assert spectral_entropy(f + shift) == pytest.approx(h, abs=1e-9)  # constant added everywhere
    assert spectral_entropy(f[torch.randperm(rows, generator=g)]) == pytest.approx(h, abs=1e-9)  # patch order


def test_batched_matches_single_and_flags_non_finite():
    g = torch.Generator().manual_seed(1)
    mats = [torch.randn(10, 3, generator=g), torch.randn(10, 3, generator=g), torch.randn(4, 20, generator=g),
            torch.full((5, 5), 2.0), torch.randn(1, 3, generator=g)]
    batched = spectral_entropies(mats)
    assert batched.tolist() == pytest.approx([spectral_entropy(m) for m in mats], abs=1e-12)
    broken = mats[0].clone()
    broken[0, 0] = float("nan")
    assert math.isnan(spectral_entropy(broken))
    assert math.isnan(spectral_entropies([broken, mats[1]])[0])


# ------------------------------------------------------------------------------------------ images


def png(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def flat_image(colour=(120, 80, 200)) -> np.ndarray:
    return np.broadcast_to(np.array(colour, np.uint8), (SIDE, SIDE, 3)).copy()


def noise_image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)


def checker_image(seed: int) -> np.ndarray:
    yy, xx = np.mgrid[:SIDE, :SIDE]
    board = (((yy // 8) + (xx // 8)) % 2 * 180 + 30).astype(np.float64)
    noisy = board[..., None] + np.random.default_rng(seed).normal(0, 20, (SIDE, SIDE, 3))
    return noisy.clip(0, 255).astype(np.uint8)


def test_decode_image_accepts_what_verl_accepts(tmp_path):
    data = png(noise_image(0))
    path = tmp_path / "a.png"
    path.write_bytes(data)
    expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    forms = [data, {"bytes": data, "path": None}, {"bytes": None, "path": str(path)}, str(path), f"file://{path}",
             {"image": str(path)}, {"image_url": f"file://{path}"}, Image.open(io.BytesIO(data)),
             "data:image/png;base64," + base64.b64encode(data).decode()]
    for form in forms:
        assert np.array_equal(np.asarray(ve.decode_image(form)), expected), str(form)[:60]
    gray = Image.fromarray(noise_image(1)[..., 0])
    assert ve.decode_image(gray).mode == "RGB"
    with pytest.raises(ValueError, match="remote"):
        ve.decode_image("https://example.com/x.png")
    with pytest.raises(Exception):  # noqa: B017 - PIL raises OSError or its own errors by format
        ve.decode_image(data[: len(data) // 2])  # truncated: fails at decode time, not later
    assert ve.row_images(None) == [] and ve.row_images([]) == [] and ve.row_images("a.png") == ["a.png"]


def test_pixel_patches_cut_like_qwen():
    image = Image.fromarray(noise_image(2))
    patches = ve.pixel_patches(image)
    assert patches.shape == ((SIDE // 14) ** 2, 588)
    first = np.asarray(image, dtype=np.float32)[:14, :14].transpose(2, 0, 1).ravel() / 255.0
    assert np.allclose(patches[0].numpy(), first)
    assert float(patches.min()) >= 0.0 and float(patches.max()) <= 1.0
    odd = ve.pixel_patches(Image.fromarray(noise_image(3)[:100, :90]), max_pixels=56 * 56)
    assert odd.shape[1] == 588 and odd.shape[0] * 196 <= max(56 * 56, 196)
    big = ve.pixel_patches(Image.new("RGB", (1000, 700)), max_pixels=200 * 200)
    assert big.shape[0] * 196 <= 200 * 200
    assert smart_resize(100, 150, 14, 56 * 56, 10**9) == (98, 154)


# ------------------------------------------------------------------------------- the tiny checkpoint


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return write_vl_checkpoint(tmp_path_factory.mktemp("tiny-qwen2_5_vl"), max_pixels=224 * 224)


@pytest.fixture(scope="module")
def encoder(tiny_model) -> ve.QwenVisionTower:
    return ve.QwenVisionTower(tiny_model, device="cpu")


def reference_encoder_features(model_dir: Path, image: Image.Image) -> np.ndarray:
    """The same features from the FULL model, built the ordinary way: what the LLM receives for the image."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    full = _full_model(model_dir)
    assert isinstance(full, Qwen2_5_VLForConditionalGeneration)
    processor = ve.load_image_processor(model_dir, full.config.vision_config, None)
    inputs = processor(images=[image], return_tensors="pt")
    with torch.inference_mode():
        out = full.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"]).pooler_output
    return torch.cat(list(out)).numpy()


_FULL_MODELS: dict = {}


def _full_model(model_dir: Path):
    from transformers import Qwen2_5_VLForConditionalGeneration

    if model_dir not in _FULL_MODELS:
        _FULL_MODELS[model_dir] = Qwen2_5_VLForConditionalGeneration.from_pretrained(model_dir).eval()
    return _FULL_MODELS[model_dir]


def test_tiny_checkpoint_is_a_realistic_folder(tiny_model):
    from safetensors import safe_open

    assert {"config.json", "model.safetensors", "preprocessor_config.json"} <= {p.name for p in tiny_model.iterdir()}
    assert "vision_config" in json.loads((tiny_model / "config.json").read_text())
    with safe_open(str(tiny_model / "model.safetensors"), framework="pt") as handle:
        keys = list(handle.keys())
    # transformers 5.10 saves Qwen2.5-VL in Qwen's original layout: `visual.*` and `model.layers.*`.
    assert "visual.patch_embed.proj.weight" in keys and any(k.startswith("model.layers.") for k in keys)


def test_encoder_features_equal_the_full_models_image_features(tiny_model, encoder):
    images = [Image.fromarray(noise_image(4)), Image.fromarray(checker_image(5)[:84, :112])]
    batched = encoder.features([encoder.prepare(im) for im in images])  # one forward, two images
    for image, got in zip(images, batched):
        want = reference_encoder_features(tiny_model, image)
        assert got.shape == want.shape and got.shape[1] == 32  # out_hidden_size of the tiny builder
        assert np.allclose(got.numpy(), want, atol=1e-5)
    assert ve.PixelPatches().settings["max_pixels"] == ve.PIXEL_MAX_PIXELS


def _rewrite_checkpoint(src: Path, dst: Path, rename, shards: int = 1) -> Path:
    """Copy a checkpoint with renamed tensor keys, optionally split into shards with an index json."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    dst.mkdir()
    for name in ("config.json", "preprocessor_config.json"):
        (dst / name).write_bytes((src / name).read_bytes())
    with safe_open(str(src / "model.safetensors"), framework="pt") as handle:
        tensors = {rename(k): handle.get_tensor(k) for k in handle.keys() if rename(k) is not None}
    keys = sorted(tensors)
    if shards == 1:
        save_file(tensors, str(dst / "model.safetensors"), metadata={"format": "pt"})
        return dst
    weight_map = {}
    for i in range(shards):
        name = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = keys[i::shards]
        save_file({k: tensors[k] for k in part}, str(dst / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, name))
    (dst / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return dst


def test_loader_accepts_other_key_layouts_and_shards(tiny_model, encoder, tmp_path):
    image = Image.fromarray(noise_image(6))
    want = encoder.features([encoder.prepare(image)])[0]
    hf_layout = _rewrite_checkpoint(tiny_model, tmp_path / "hf",
                                    lambda k: "model." + k if k.startswith("visual.") else k, shards=3)
    tower_only = _rewrite_checkpoint(tiny_model, tmp_path / "tower",
                                     lambda k: k.removeprefix("visual.") if k.startswith("visual.") else None)
    config = json.loads((tiny_model / "config.json").read_text())
    (tower_only / "config.json").write_text(json.dumps(config["vision_config"]))  # a saved bare tower's config
    for folder in (hf_layout, tower_only):
        other = ve.QwenVisionTower(folder, device="cpu")
        assert torch.equal(other.features([other.prepare(image)])[0], want)

    text_only = _rewrite_checkpoint(tiny_model, tmp_path / "text", lambda k: None if k.startswith("visual.") else k)
    with pytest.raises(ve.VisualEntropyError, match="no vision-tower weights"):
        ve.load_qwen25_vision_tower(text_only)
    with pytest.raises(ve.VisualEntropyError, match="not a local checkpoint"):
        ve.load_qwen25_vision_tower(tmp_path / "missing")


@pytest.mark.parametrize("backend", ["pixel", "encoder"])
def test_flat_image_scores_below_textured(backend, encoder):
    featurizer = encoder if backend == "encoder" else ve.PixelPatches()
    images = [flat_image(), flat_image((3, 250, 9)), noise_image(7), checker_image(8)]
    feats = featurizer.features([featurizer.prepare(Image.fromarray(a)) for a in images])
    flat_a, flat_b, noise, checker = spectral_entropies(feats).tolist()
    assert flat_a == 0.0 and flat_b == 0.0
    assert noise > flat_a and checker > flat_a
    assert noise > 1.0 and checker > 0.5


# ---------------------------------------------------------------------------------------- the command


IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
SCHEMA = pa.schema([
    ("data_source", pa.string()),
    ("prompt", pa.list_(pa.struct([("content", pa.string()), ("role", pa.string())]))),
    ("images", pa.list_(IMAGE)),
    ("reward_model", pa.struct([("ground_truth", pa.string()), ("style", pa.string())])),
    ("extra_info", pa.struct([("index", pa.int64()), ("split", pa.string())])),
])


@pytest.fixture
def dataset(tmp_path):
    """12 rows as verl's preprocessing writes them (HF Image feature: {bytes, path})."""
    on_disk = tmp_path / "on_disk.png"
    on_disk.write_bytes(png(noise_image(12)))
    arrays = {
        0: flat_image(), 1: noise_image(1), 2: checker_image(2), 3: flat_image((10, 10, 10)),
        8: noise_image(8), 10: checker_image(10),
    }
    images = {row: [{"bytes": png(a), "path": None}] for row, a in arrays.items()}
    images[4] = [{"bytes": png(flat_image()), "path": None}, {"bytes": png(noise_image(4)), "path": None}]
    images[5] = []
    images[6] = [{"bytes": png(noise_image(6)), "path": None}, {"bytes": b"\x89PNG not really", "path": None}]
    images[7] = [{"bytes": None, "path": str(on_disk)}]
    images[9] = None
    images[11] = [{"bytes": png(np.dstack([noise_image(11)[..., :3], np.full((SIDE, SIDE), 255, np.uint8)])),
                   "path": "rgba.png"}]
    rows = [{"data_source": f"src{row % 3}", "prompt": [{"content": f"<image>question {row}", "role": "user"}],
             "images": images[row], "reward_model": {"ground_truth": str(row), "style": "rule"},
             "extra_info": {"index": row, "split": "train"}} for row in range(12)]
    path = tmp_path / "train.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), path)
    return path


EXPECTED = {"with_value": [0, 1, 2, 3, 4, 7, 8, 10, 11], "no_image": [5, 9], "error": [6]}


def expected_pixel_values(path: Path) -> dict[int, float]:
    table = pq.read_table(path).to_pylist()
    out = {}
    for row in EXPECTED["with_value"]:
        values = [reference_pixel_entropy(ve.decode_image(ref)) for ref in table[row]["images"]]
        out[row] = sum(values) / len(values)
    return out


def read_extra(path: Path) -> list[dict]:
    return pq.read_table(path).column("extra_info").to_pylist()


def test_command_end_to_end_pixel(dataset, tmp_path, capsys):
    out = tmp_path / "train.ve.parquet"
    assert ve.main([str(dataset), str(out), "--backend", "pixel", "--batch-size", "3", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "9 with a value, 2 without image, 1 skipped" in printed and "images/s" in printed

    before, after = pq.read_table(dataset), pq.read_table(out)
    others = [c for c in before.column_names if c != "extra_info"]
    assert after.column_names == before.column_names
    assert after.select(others).equals(before.select(others))  # every other column, and the row order
    extra = read_extra(out)
    assert [e["index"] for e in extra] == list(range(12)) and all(e["split"] == "train" for e in extra)

    expected = expected_pixel_values(dataset)
    for row, e in enumerate(extra):
        if row in expected:
            assert e["visual_entropy"] == pytest.approx(expected[row], abs=1e-6), row
            assert e["visual_entropy_backend"] == "pixel-proxy"
        else:
            assert e["visual_entropy"] is None and e["visual_entropy_backend"] is None, row
    assert extra[0]["visual_entropy"] == 0.0 and extra[1]["visual_entropy"] > 3.0
    assert extra[4]["visual_entropy"] == pytest.approx(expected[4]) and expected[4] == pytest.approx(
        reference_pixel_entropy(Image.fromarray(noise_image(4))) / 2)  # mean of flat (0) and noise

    report = json.loads(ve.report_path(out).read_text())
    assert report["rows"] == 12 and report["rows_with_value"] == 9
    assert report["rows_without_image"] == 2 and report["rows_skipped_error"] == 1
    assert [(e["row"], e["image"], e["error"]) for e in report["errors"]] == [
        (6, 1, "UnidentifiedImageError: not a readable image")]
    assert report["images_scored"] == 10 and report["this_run"]["images"] == 10
    assert report["backend"] == "pixel-proxy" and report["proxy"] is True and "proxy" in report["features"]
    assert not (tmp_path / "train.ve.parquet.partial").exists()


def test_command_end_to_end_encoder(dataset, tiny_model, tmp_path):
    out = tmp_path / "enc.parquet"
    calls = []
    original = ve.QwenVisionTower.features

    def counting(self, prepared):
        calls.append(len(prepared))
        return original(self, prepared)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ve.QwenVisionTower, "features", counting)
        report = ve.add_visual_entropy(dataset, out, model=tiny_model, device="cpu", batch_size=4, progress=False)
    assert max(calls) > 1 and sum(calls) == 10  # images go through the tower several at a time
    extra = read_extra(out)
    table = pq.read_table(dataset).to_pylist()
    for row in EXPECTED["with_value"]:
        values = [reference_entropy(reference_encoder_features(tiny_model, ve.decode_image(ref)))
                  for ref in table[row]["images"]]
        assert extra[row]["visual_entropy"] == pytest.approx(sum(values) / len(values), abs=1e-5), row
        assert extra[row]["visual_entropy_backend"] == f"encoder:{tiny_model.name}"
    assert extra[0]["visual_entropy"] == 0.0 < extra[2]["visual_entropy"]
    assert report["backend"] == f"encoder:{tiny_model.name}" and report["proxy"] is False
    assert report["rows_skipped_error"] == 1 and report["settings"]["max_pixels"] == 224 * 224


def test_on_error_fail_names_the_row_and_keeps_finished_batches(dataset, tmp_path):
    out = tmp_path / "fail.parquet"
    with pytest.raises(ve.ImageRowError, match=r"row 6, image 1") as caught:
        ve.add_visual_entropy(dataset, out, backend="pixel", on_error="fail", batch_size=2, progress=False)
    assert caught.value.row == 6 and not out.exists()
    done = ve.Sidecar(tmp_path / "fail.parquet.partial").finished()
    assert sorted(done) == [0, 1, 2, 3, 4]  # batches before the bad one ([5, 6]) are saved
    assert ve.main([str(dataset), str(out), "--backend", "pixel", "--on-error", "fail", "--batch-size", "2",
                    "--no-progress"]) == 1  # the CLI says so and exits non-zero
    report = ve.add_visual_entropy(dataset, out, backend="pixel", batch_size=2, progress=False)  # skip: resumes
    assert report["this_run"]["resumed_rows"] == 5 and report["rows_skipped_error"] == 1


def _counting_pixel_backend(mp, log: list, fail_on_call: int | None = None):
    """Count every image decoded and every features() call; optionally raise (an interruption) on one call."""
    original_prepare, original_features = ve.PixelPatches.prepare, ve.PixelPatches.features

    def prepare(self, image):
        log.append("prepare")
        return original_prepare(self, image)

    def features(self, prepared):
        if fail_on_call is not None and log.count("features") + 1 == fail_on_call:
            raise KeyboardInterrupt("simulated interruption")
        log.append("features")
        log.extend(["image"] * len(prepared))
        return original_features(self, prepared)

    mp.setattr(ve.PixelPatches, "prepare", prepare)
    mp.setattr(ve.PixelPatches, "features", features)


def test_resume_does_not_redo_finished_rows(dataset, tmp_path):
    reference = tmp_path / "uninterrupted.parquet"
    ve.add_visual_entropy(dataset, reference, backend="pixel", batch_size=3, progress=False)

    out = tmp_path / "resumed.parquet"
    first: list = []
    with pytest.MonkeyPatch.context() as mp:
        _counting_pixel_backend(mp, first, fail_on_call=3)
        with pytest.raises(KeyboardInterrupt):
            ve.add_visual_entropy(dataset, out, backend="pixel", batch_size=3, progress=False)
    finished = ve.Sidecar(tmp_path / "resumed.parquet.partial").finished()
    assert sorted(finished) == [0, 1, 2, 3, 4] and not out.exists()  # batches [0,1,2] and [3,4] were saved
    assert first.count("image") == 6  # rows 0-3 hold one image each, row 4 two

    second: list = []
    with pytest.MonkeyPatch.context() as mp:
        _counting_pixel_backend(mp, second)
        report = ve.add_visual_entropy(dataset, out, backend="pixel", batch_size=3, progress=False)
    # rows 5-11 only: the good images of rows 6, 7, 8, 10, 11 are prepared (row 6's second one does not decode),
    # and those of the rows without an error (7, 8, 10, 11) go through features()
    assert second.count("prepare") == 5 and second.count("image") == 4
    assert report["this_run"]["resumed_rows"] == 5 and report["this_run"]["images"] == 4
    assert report["images_scored"] == 10 and [(e["row"], e["image"]) for e in report["errors"]] == [(6, 1)]
    assert pq.read_table(out).equals(pq.read_table(reference))
    assert not (tmp_path / "resumed.parquet.partial").exists()


def test_resume_refuses_a_changed_input_or_settings(dataset, tmp_path):
    out = tmp_path / "o.parquet"
    with pytest.MonkeyPatch.context() as mp:
        _counting_pixel_backend(mp, [], fail_on_call=2)
        with pytest.raises(KeyboardInterrupt):
            ve.add_visual_entropy(dataset, out, backend="pixel", batch_size=3, progress=False)

    with pytest.raises(ve.VisualEntropyError, match="settings changed.*--overwrite"):
        ve.add_visual_entropy(dataset, out, backend="pixel", batch_size=3, max_pixels=56 * 56, progress=False)

    table = pq.read_table(dataset)
    pq.write_table(table.slice(0, 11), dataset)  # the input was regenerated meanwhile
    with pytest.raises(ve.VisualEntropyError, match="input file changed.*--overwrite"):
        ve.add_visual_entropy(dataset, out, backend="pixel", batch_size=3, progress=False)
    stat = dataset.stat()
    os.utime(dataset, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # same bytes, touched
    with pytest.raises(ve.VisualEntropyError, match="input file changed"):
        ve.add_visual_entropy(dataset, out, backend="pixel", batch_size=3, progress=False)

    report = ve.add_visual_entropy(dataset, out, backend="pixel", overwrite=True, progress=False)
    assert report["rows"] == 11 and report["this_run"]["resumed_rows"] == 0
    with pytest.raises(ve.VisualEntropyError, match="exists; pass --overwrite"):
        ve.add_visual_entropy(dataset, out, backend="pixel", progress=False)


def test_extra_info_is_created_when_missing_and_null_rows_are_kept(tmp_path):
    data = png(noise_image(20))
    table = pa.table({"images": pa.array([[{"bytes": data, "path": None}], None], pa.list_(IMAGE)),
                      "prompt": ["a", "b"]})
    path = tmp_path / "bare.parquet"
    pq.write_table(table, path)
    ve.add_visual_entropy(path, tmp_path / "bare.ve.parquet", backend="pixel", progress=False)
    extra = read_extra(tmp_path / "bare.ve.parquet")
    assert extra[0]["visual_entropy"] > 0 and extra[1] == {"visual_entropy": None, "visual_entropy_backend": None}

    nulls = table.append_column("extra_info", pa.array([None, {"index": 1}], pa.struct([("index", pa.int64())])))
    pq.write_table(nulls, path)
    ve.add_visual_entropy(path, tmp_path / "nulls.parquet", backend="pixel", progress=False)
    extra = read_extra(tmp_path / "nulls.parquet")
    assert extra[0]["index"] is None and extra[0]["visual_entropy"] > 0  # a null extra_info that got a value
    assert extra[1] == {"index": 1, "visual_entropy": None, "visual_entropy_backend": None}

    hf_spec = {"info": {"features": {"images": {"feature": {"_type": "Image"}, "_type": "List"},
                                     "extra_info": {"index": {"dtype": "int64", "_type": "Value"}}}}}
    pq.write_table(nulls.replace_schema_metadata({"huggingface": json.dumps(hf_spec)}), path)
    ve.add_visual_entropy(path, tmp_path / "hf.parquet", backend="pixel", progress=False)
    features = json.loads(pq.read_schema(tmp_path / "hf.parquet").metadata[b"huggingface"])["info"]["features"]
    assert features["extra_info"] == {"index": {"dtype": "int64", "_type": "Value"},
                                      "visual_entropy": {"dtype": "float64", "_type": "Value"},
                                      "visual_entropy_backend": {"dtype": "string", "_type": "Value"}}

    pq.write_table(table.append_column("extra_info", pa.array(["{}", "{}"])), path)
    with pytest.raises(ve.VisualEntropyError, match="expected a struct"):  # refused before any work
        ve.add_visual_entropy(path, tmp_path / "u.parquet", backend="pixel", progress=False)

    bare_strings = pa.table({"images": [str(tmp_path / "nope.png"), None]})  # one path per row, no list
    pq.write_table(bare_strings, path)
    report = ve.add_visual_entropy(path, tmp_path / "s.parquet", backend="pixel", overwrite=True, progress=False)
    assert report["rows_skipped_error"] == 1 and report["rows_without_image"] == 1
    with pytest.raises(ve.VisualEntropyError, match="no column 'pics'"):
        ve.add_visual_entropy(path, tmp_path / "t.parquet", backend="pixel", image_key="pics", progress=False)
    with pytest.raises(ve.VisualEntropyError, match="needs --model"):
        ve.add_visual_entropy(path, tmp_path / "t.parquet", progress=False)


HOLD_LOCK = """
import sys, time
from pathlib import Path
from verl_difficulty import visual_entropy as ve
with ve.OutputLock(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(600)
"""


def test_second_run_on_one_output_fails_fast_naming_the_first(dataset, tmp_path, capsys):
    out = tmp_path / "locked.parquet"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out), "--marker"], stdout=subprocess.PIPE,
                              text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ve.VisualEntropyError, match=rf"{out} is being written by another run \(pid {holder.pid} "
                                                        r"on .*--marker\); wait for it"):
            ve.add_visual_entropy(dataset, out, backend="pixel", progress=False)
        assert ve.main([str(dataset), str(out), "--backend", "pixel", "--no-progress"]) == 1
        assert f"pid {holder.pid}" in capsys.readouterr().err
        assert not out.exists() and not (tmp_path / "locked.parquet.partial").exists()  # nothing touched
    finally:
        holder.kill()  # SIGKILL: the lock file stays behind, but the kernel released its lock
        holder.wait()
    assert (tmp_path / "locked.parquet.lock").exists()
    report = ve.add_visual_entropy(dataset, out, backend="pixel", progress=False)
    assert report["rows_with_value"] == 9 and not (tmp_path / "locked.parquet.lock").exists()


def test_the_lock_is_held_while_the_run_works(dataset, tmp_path):
    out = tmp_path / "busy.parquet"
    seen = []
    original = ve.PixelPatches.features

    def features_and_try_a_second_run(self, prepared):
        with pytest.raises(ve.VisualEntropyError, match=f"pid {os.getpid()}"):
            ve.add_visual_entropy(dataset, out, backend="pixel", progress=False)
        seen.append(len(prepared))
        return original(self, prepared)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ve.PixelPatches, "features", features_and_try_a_second_run)
        ve.add_visual_entropy(dataset, out, backend="pixel", batch_size=4, progress=False)
    assert seen and out.exists()


def test_max_pixels_below_a_few_patches_is_refused(dataset, tiny_model, tmp_path, capsys):
    out = tmp_path / "tiny.parquet"
    for backend in ("pixel", "encoder"):
        with pytest.raises(ve.VisualEntropyError, match=r"--max-pixels 1 is below .* min_pixels 3136.*at least 3136"):
            ve.add_visual_entropy(dataset, out, backend=backend, model=tiny_model, max_pixels=1, progress=False)
    assert ve.main([str(dataset), str(out), "--backend", "pixel", "--max-pixels", "784", "--no-progress"]) == 1
    assert "--max-pixels 784 is below" in capsys.readouterr().err and not out.exists()
    with pytest.raises(ve.VisualEntropyError, match="--max-pixels 1 is below"):
        ve.PixelPatches(max_pixels=1)
    # the smallest accepted bound still separates a flat image from a textured one
    ve.add_visual_entropy(dataset, out, backend="pixel", max_pixels=ve.MIN_MAX_PIXELS, progress=False)
    extra = read_extra(out)
    assert extra[0]["visual_entropy"] == 0.0 and extra[1]["visual_entropy"] > 1.0


def test_threads_option_sets_torch_threads(dataset, tmp_path, capsys):
    before = torch.get_num_threads()
    try:
        assert ve.main([str(dataset), str(tmp_path / "t.parquet"), "--backend", "pixel", "--threads", "1",
                        "--no-progress"]) == 0
        assert "1 torch threads" in capsys.readouterr().out
        assert json.loads(ve.report_path(tmp_path / "t.parquet").read_text())["this_run"]["torch_threads"] == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(SystemExit):
        ve.main([str(dataset), str(tmp_path / "u.parquet"), "--threads", "0"])
    assert "--threads must be >= 1" in capsys.readouterr().err
    assert 1 <= ve.default_threads() <= 4


def test_cli_sets_a_passive_openmp_wait_policy(tmp_path):
    probe = ("import runpy, sys; sys.argv = ['ve', '--help']\n"
             "try:\n    runpy.run_module('verl_difficulty.visual_entropy', run_name='__main__')\n"
             "except SystemExit:\n    pass\nimport os; print('policy', os.environ.get('OMP_WAIT_POLICY'))")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert "policy PASSIVE" in out.stdout, out.stdout + out.stderr
    library = subprocess.run([sys.executable, "-c", "import os; import verl_difficulty.visual_entropy; "
                              "print('policy', os.environ.get('OMP_WAIT_POLICY'))"],
                             capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert "policy None" in library.stdout, library.stdout + library.stderr  # importing it changes nothing


def test_cli_help():
    out = subprocess.run([sys.executable, "-m", "verl_difficulty.visual_entropy", "--help"], capture_output=True,
                         text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "--backend" in out.stdout and "PROXY" in out.stdout and "--on-error" in out.stdout


def test_benchmark_prints_a_table():
    out = subprocess.run([sys.executable, "benchmarks/bench_visual_entropy.py", "--images", "4", "--size", "112",
                          "--batch-size", "2", "--repeats", "1"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "pixel-proxy" in out.stdout and "encoder:tiny-random-qwen2.5-vl" in out.stdout
    assert "command line: python benchmarks/bench_visual_entropy.py --images 4" in out.stdout
