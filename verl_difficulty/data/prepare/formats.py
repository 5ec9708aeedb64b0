"""The formats ``prepare`` converts, by name."""

from __future__ import annotations

from verl_difficulty.data.prepare.common import Format
from verl_difficulty.data.prepare.diva import DIVA_EXTRA, DIVA_MAX_PIXELS, DIVA_MIN_PIXELS, convert_diva, read_diva
from verl_difficulty.data.prepare.geometry3k import (
    GEO3K_EXTRA,
    GEO3K_MAX_PIXELS,
    GEO3K_MIN_PIXELS,
    convert_geometry3k,
    read_geometry3k,
)
from verl_difficulty.data.prepare.openvlthinker import (
    OVT_EXTRA,
    OVT_MAX_PIXELS,
    OVT_MIN_PIXELS,
    convert_openvlthinker,
    read_json_records,
)

FORMATS: dict[str, Format] = {
    "openvlthinker": Format("openvlthinker", "OpenVLThinkerV2 training JSON (the authors' example_data format)",
                            OVT_MIN_PIXELS, OVT_MAX_PIXELS, OVT_EXTRA, read_json_records, convert_openvlthinker),
    "geometry3k": Format("geometry3k", "Geometry3K parquet as published on the hub (hiyouga/geometry3k)",
                         GEO3K_MIN_PIXELS, GEO3K_MAX_PIXELS, GEO3K_EXTRA, read_geometry3k, convert_geometry3k),
    "diva": Format("diva", "DIVA-GRPO training parquet (the authors' EasyR1 layout: problem, answer, images, id, "
                   "variants, think_steps)", DIVA_MIN_PIXELS, DIVA_MAX_PIXELS, DIVA_EXTRA, read_diva, convert_diva),
}
