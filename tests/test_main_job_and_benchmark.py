"""The README's main job and the benchmark script run end to end (small shapes for the benchmark)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "VERL_USE_EXTERNAL_PLUGINS": "verl_difficulty"}


@pytest.mark.ray
def test_main_job_runs_both_trainers():
    out = subprocess.run([sys.executable, "examples/demo.py", "--prompts", "12", "--n", "4"],
                         capture_output=True, text=True, env=ENV, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "[legacy trainer]" in out.stdout and "[v1 trainer]" in out.stdout
    assert "g2rpo/task/math/adv_abs_mean" in out.stdout  # metrics came back through the v1 trainer
    assert "padding rows' advantages: 0.0" in out.stdout
    for task in ("math", "ocr", "chart"):
        assert re.search(rf"^\s+{task}\s+\d+", out.stdout, re.M)


def test_benchmark_prints_ratios_for_every_estimator():
    out = subprocess.run([sys.executable, "benchmarks/bench_estimators.py", "--shapes", "16x4x32,8x8x16",
                          "--repeats", "2"], capture_output=True, text=True, env=ENV, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    rows = re.findall(r"^(\d+x\d+x\d+)\s+(\w+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$", out.stdout, re.M)
    assert {(shape, name) for shape, name, *_ in rows} == {
        (s, e) for s in ("16x4x32", "8x8x16") for e in ("grpo", "grpo_vectorized", "g2rpo", "durian", "diva_grpo")}
    assert all(float(vs_vec) == 1.0 for _, name, _, vs_vec, _ in rows if name == "grpo_vectorized")
    assert "worst ratio of ours to grpo_vectorized" in out.stdout
