"""verl's dataset classes with the image path of qwen-vl-utils replaced by PIL, for machines without torchvision.

verl's ``RLHFDataset`` calls ``qwen_vl_utils.process_vision_info`` for any prompt with an image (in the
over-long-prompt filter and, through ``dataset_cls.process_multi_modal_info``, in the agent loop), and
qwen-vl-utils 0.0.14 imports torchvision at module level: installing it does not help beside the CPU torch wheel.
``PilVisionRLHFDataset`` (``data.custom_cls.path=pkg://verl_difficulty.cpu.dataset``,
``data.custom_cls.name=PilVisionRLHFDataset``) replaces that call with a PIL-only equivalent for images
(qwen-vl-utils' ``fetch_image``: RGB, ``smart_resize`` to multiples of 2·patch within its default pixel bounds;
56x56 images pass unchanged). Videos are refused. With stock ``RLHFDataset`` and no working qwen-vl-utils, the
over-long filter drops EVERY image row (it catches the ImportError per row). ``PilVisionDivaDataset`` is the same
for ``verl_difficulty.data.diva_dataset.DivaDataset``.
"""

from __future__ import annotations

from verl_difficulty.images import decode_image, smart_resize

__all__ = ["pil_process_vision_info"]


def pil_process_vision_info(messages: list[dict], image_patch_size: int = 14) -> list | None:
    """The images of a chat, as ``qwen_vl_utils.process_vision_info`` returns them, with PIL only (no videos)."""
    from PIL import Image

    factor = int(image_patch_size) * 2
    images = []
    for message in messages:
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for item in content:
            if not isinstance(item, dict):
                continue
            if "video" in item or item.get("type") == "video":
                raise NotImplementedError("videos need qwen-vl-utils (and torchvision); this path handles images")
            if not ("image" in item or "image_url" in item or item.get("type") in ("image", "image_url")):
                continue
            ref = item.get("image", item.get("image_url"))
            if ref is None:
                raise ValueError("image, image_url or video should be in content")
            if isinstance(ref, Image.Image):
                image = ref.convert("RGB") if ref.mode != "RGBA" else _flatten_rgba(ref)
            else:
                image = decode_image(ref)
            if "resized_height" in item and "resized_width" in item:
                height, width = smart_resize(int(item["resized_height"]), int(item["resized_width"]), factor,
                                             4 * factor**2, 16384 * factor**2)
            else:
                height, width = smart_resize(image.height, image.width, factor,
                                             int(item.get("min_pixels", 4 * factor**2)),
                                             int(item.get("max_pixels", 16384 * factor**2)))
            images.append(image.resize((width, height)) if (width, height) != image.size else image)
    return images or None


def _flatten_rgba(image):
    from PIL import Image

    background = Image.new("RGB", image.size, (255, 255, 255))
    background.paste(image, mask=image.split()[3])
    return background


# CPU stand-ins: name -> (module, class) of the dataset whose image path is replaced. DivaDataset subclasses
# verl's RLHFDataset and inherits its qwen-vl-utils call, so a recipe using it needs its own PIL twin.
_PIL_VISION_BASES = {"PilVisionRLHFDataset": ("verl.utils.dataset.rl_dataset", "RLHFDataset"),
                     "PilVisionDivaDataset": ("verl_difficulty.data.diva_dataset", "DivaDataset")}


def _make_dataset_class(name: str = "PilVisionRLHFDataset"):
    import asyncio
    import importlib

    module, base_name = _PIL_VISION_BASES[name]
    base = getattr(importlib.import_module(module), base_name)

    class PilVisionRLHFDataset(base):
        """A verl dataset class with the image path of qwen-vl-utils replaced by PIL (no torchvision)."""

        @classmethod
        def _process_multi_modal_info(cls, messages, image_patch_size, config):
            has_visual = any(
                isinstance(m.get("content"), list)
                and any(isinstance(c, dict) and c.get("type") in {"image", "video"} for c in m["content"])
                for m in messages)
            images = pil_process_vision_info(messages, image_patch_size) if has_visual else None
            return images, None, cls._extract_audio_info(messages)

        @classmethod
        async def process_vision_info(cls, messages, image_patch_size, config):
            loop = asyncio.get_running_loop()
            images = await loop.run_in_executor(None, lambda: pil_process_vision_info(messages, image_patch_size))
            return images, None

    PilVisionRLHFDataset.__module__ = __name__
    PilVisionRLHFDataset.__name__ = PilVisionRLHFDataset.__qualname__ = name
    return PilVisionRLHFDataset


def __getattr__(name: str):
    # PilVisionRLHFDataset / PilVisionDivaDataset are built on first access (not in __all__): importing this
    # module must not import verl's dataset stack, which the asset builder does not need.
    if name in _PIL_VISION_BASES:
        cls = _make_dataset_class(name)
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
