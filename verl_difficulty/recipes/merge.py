"""Merge a run's last verl checkpoint into a Hugging Face folder, with verl's own model merger.

    python -m verl_difficulty.recipes.merge CHECKPOINT_DIR TARGET_DIR [--backend fsdp] [--trust-remote-code]

CHECKPOINT_DIR is the run's ``trainer.default_local_dir``; its ``latest_checkpointed_iteration.txt`` (written by
verl with every checkpoint) names the step, whose ``global_step_N/actor`` is merged by
``python -m verl.model_merger merge --backend fsdp --local_dir ... --target_dir TARGET_DIR``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

__all__ = ["latest_actor_dir", "merge_command", "main"]

MARKER = "latest_checkpointed_iteration.txt"


def latest_actor_dir(checkpoint_dir: str | Path) -> Path:
    root = Path(checkpoint_dir)
    marker = root / MARKER
    if not marker.is_file():
        raise FileNotFoundError(f"{root} holds no verl checkpoint ({MARKER} is missing): did the run save one? "
                                "(trainer.save_freq > 0, or the run ended before its first save)")
    actor = root / f"global_step_{int(marker.read_text().strip())}" / "actor"
    if not actor.is_dir():
        raise FileNotFoundError(f"{marker} names {actor.parent.name}, but {actor} is not there")
    return actor


def merge_command(actor_dir: Path, target_dir: str | Path, backend: str = "fsdp",
                  trust_remote_code: bool = False) -> list[str]:
    cmd = [sys.executable, "-m", "verl.model_merger", "merge", "--backend", backend,
           "--local_dir", str(actor_dir), "--target_dir", str(target_dir)]
    return cmd + (["--trust-remote-code"] if trust_remote_code else [])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint_dir")
    parser.add_argument("target_dir")
    parser.add_argument("--backend", default="fsdp", choices=("fsdp", "megatron"))
    parser.add_argument("--trust-remote-code", action="store_true")
    args = parser.parse_args(argv)
    try:
        actor = latest_actor_dir(Path(args.checkpoint_dir).absolute())
    except FileNotFoundError as error:
        print(f"merge: {error}", file=sys.stderr)
        return 1
    cmd = merge_command(actor, args.target_dir, args.backend, args.trust_remote_code)
    print("merge: " + " ".join(cmd), flush=True)
    # cwd: the checkpoint's folder. Started as a Ray job, our own cwd is Ray's copy of the working_dir, which Ray
    # may have removed by the end of a long run, and torch cannot load from a removed cwd (MKL: "Cannot load
    # libtorch_cpu.so")
    return subprocess.call(cmd, cwd=actor.parent)


if __name__ == "__main__":
    sys.exit(main())
