"""The encoder backend: merged patch embeddings of a Qwen2.5-VL vision tower, read alone from a checkpoint."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from verl_difficulty.visual_entropy.errors import VisualEntropyError
from verl_difficulty.visual_entropy.pixels import check_max_pixels

__all__ = ["QwenVisionTower", "load_image_processor", "load_qwen25_vision_tower", "read_vision_state_dict",
           "resolve_device"]

ENCODER_FEATURES = "merged patch embeddings (vision tower output, the LLM's visual tokens)"


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise VisualEntropyError(f"--device {device}: CUDA is not available on this machine")
    return torch.device(device)


def load_qwen25_vision_tower(model_dir: str | os.PathLike, device: str | torch.device = "cpu",
                             dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """The Qwen2.5-VL vision tower of a local checkpoint, alone, in eval mode.

    ``model_dir`` is a Qwen2.5-VL checkpoint folder (config.json with a ``vision_config``) or a saved tower
    (``model_type: qwen2_5_vl_vision``). The language model is never built, and only the tower's tensors are
    read from the safetensors file(s).
    """
    from transformers import AutoConfig
    from transformers.initialization import no_init_weights
    from transformers.models.qwen2_5_vl.configuration_qwen2_5_vl import Qwen2_5_VLVisionConfig
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VisionTransformerPretrainedModel

    model_dir = _checkpoint_dir(model_dir)
    config = AutoConfig.from_pretrained(model_dir)
    vision_config = getattr(config, "vision_config", config)
    if not isinstance(vision_config, Qwen2_5_VLVisionConfig):
        raise VisualEntropyError(f"{model_dir}: model_type {config.model_type!r} is not Qwen2.5-VL "
                                 "(the encoder backend supports Qwen2.5-VL vision towers; --backend pixel needs none)")
    with no_init_weights():  # every weight comes from the checkpoint: skip the random init (~0.7B params at 7B)
        tower = Qwen2_5_VisionTransformerPretrainedModel._from_config(
            vision_config, attn_implementation="sdpa", dtype=dtype)
    tower.load_state_dict(read_vision_state_dict(model_dir, tower.state_dict().keys()), strict=True)
    return tower.to(device=device, dtype=dtype).eval()


def _checkpoint_dir(model_dir: str | os.PathLike) -> Path:
    path = Path(model_dir).expanduser()
    if not (path / "config.json").is_file():
        raise VisualEntropyError(f"--model {model_dir}: not a local checkpoint folder with a config.json "
                                 "(hub names are not downloaded; pass the folder, e.g. the run's model path)")
    return path.resolve()


_ANCHOR = "patch_embed.proj.weight"  # one tensor every Qwen vision tower has; its key reveals the prefix
_KNOWN_PREFIXES = ("model.visual.", "visual.", "")  # transformers >= 4.52 layout, Qwen's own layout, a bare tower


def read_vision_state_dict(model_dir: Path, tower_keys: Iterable[str]) -> dict[str, torch.Tensor]:
    """The tower's tensors from ``model_dir``'s safetensors file(s), keys stripped of the checkpoint's prefix."""
    from safetensors import safe_open

    key_to_file = _safetensors_index(model_dir)
    prefixes = [k[: -len(_ANCHOR)] for k in key_to_file if k == _ANCHOR or k.endswith("." + _ANCHOR)]
    known = [p for p in _KNOWN_PREFIXES if p in prefixes]
    if not prefixes:
        raise VisualEntropyError(f"{model_dir}: no vision-tower weights (no '*{_ANCHOR}' tensor) in its "
                                 "safetensors files; is this a vision-language checkpoint?")
    prefix = known[0] if known else prefixes[0]
    wanted = {prefix + key: key for key in tower_keys}
    missing = sorted(k for k in wanted if k not in key_to_file)
    if missing:
        raise VisualEntropyError(f"{model_dir}: vision tower under '{prefix}' lacks {len(missing)} tensors, "
                                 f"e.g. {missing[:3]}; the checkpoint does not match its config.json")
    state: dict[str, torch.Tensor] = {}
    for file in sorted({key_to_file[k] for k in wanted}):
        with safe_open(str(model_dir / file), framework="pt") as handle:
            for full_key in handle.keys():
                if full_key in wanted:
                    state[wanted[full_key]] = handle.get_tensor(full_key)
    return state


def _safetensors_index(model_dir: Path) -> dict[str, str]:
    """tensor name -> file name, from the shard index when there is one (no tensor is read here)."""
    from safetensors import safe_open

    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        return dict(json.loads(index.read_text())["weight_map"])
    files = sorted(p.name for p in model_dir.glob("*.safetensors"))
    if not files:
        raise VisualEntropyError(f"{model_dir}: no *.safetensors files (only safetensors checkpoints are read)")
    key_to_file = {}
    for name in files:
        with safe_open(str(model_dir / name), framework="pt") as handle:
            key_to_file.update(dict.fromkeys(handle.keys(), name))
    return key_to_file


def load_image_processor(model_dir: Path, vision_config: Any, max_pixels: int | None):
    """The checkpoint's own Qwen2-VL image processor, PIL backend (torchvision is not required)."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    overrides = {"max_pixels": max_pixels} if max_pixels else {}
    if (model_dir / "preprocessor_config.json").is_file():
        processor = Qwen2VLImageProcessorPil.from_pretrained(model_dir, **overrides)
    else:  # a bare saved tower: Qwen's defaults, cut to the tower's geometry
        processor = Qwen2VLImageProcessorPil(patch_size=vision_config.patch_size,
                                             temporal_patch_size=vision_config.temporal_patch_size,
                                             merge_size=vision_config.spatial_merge_size, **overrides)
    geometry = (processor.patch_size, processor.temporal_patch_size, processor.merge_size)
    expected = (vision_config.patch_size, vision_config.temporal_patch_size, vision_config.spatial_merge_size)
    if geometry != expected:
        raise VisualEntropyError(f"{model_dir}: image processor cuts (patch, temporal, merge) = {geometry} but "
                                 f"the vision tower expects {expected}")
    return processor


class QwenVisionTower:
    """The encoder backend: merged patch embeddings from a Qwen2.5-VL vision tower.

    Why the tower's output (after the 2×2 patch merger) rather than the last block's per-patch states: the
    merged embeddings are what the language model consumes, so the entropy describes the image as the
    policy perceives it, and they are the tower's one stable, documented output.
    """

    description = ENCODER_FEATURES

    def __init__(self, model_dir: str | os.PathLike, device: str = "auto", dtype: str = "float32",
                 max_pixels: int | None = None):
        self.model_dir = _checkpoint_dir(model_dir)
        if dtype not in ("float32", "bfloat16"):
            raise VisualEntropyError(f"dtype must be float32 or bfloat16, got {dtype!r}")
        self.device = resolve_device(device)
        self.dtype = getattr(torch, dtype)
        self.tower = load_qwen25_vision_tower(self.model_dir, self.device, self.dtype)
        self.processor = load_image_processor(self.model_dir, self.tower.config, max_pixels)
        check_max_pixels(max_pixels, int(self.processor.size["shortest_edge"]))
        self.merge_unit = self.tower.config.spatial_merge_size ** 2
        self.label = f"encoder:{self.model_dir.name}"
        self.settings = {"backend": "encoder", "model": str(self.model_dir), "dtype": dtype,
                         "max_pixels": int(self.processor.size["longest_edge"]),
                         "min_pixels": int(self.processor.size["shortest_edge"])}

    def prepare(self, image: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.processor(images=[image], return_tensors="np")
        return torch.from_numpy(out["pixel_values"]), torch.from_numpy(out["image_grid_thw"])

    def features(self, prepared: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> list[torch.Tensor]:
        # One forward for the whole batch: the tower takes every image's patches concatenated, and grid_thw
        # keeps its attention within each image.
        pixel_values = torch.cat([p for p, _ in prepared]).to(self.device, self.dtype)
        grid_thw = torch.cat([g for _, g in prepared])
        with torch.inference_mode():
            merged = self.tower(pixel_values, grid_thw=grid_thw.to(self.device)).pooler_output
        return list(torch.split(merged.float(), (grid_thw.prod(-1) // self.merge_unit).tolist()))
