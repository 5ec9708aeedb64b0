"""Hydra configs shipped with the plugin. ``python -m verl_difficulty.config`` prints their folder,
for ``--config-path`` (see verl_difficulty_trainer.yaml)."""

from pathlib import Path

CONFIG_DIR = str(Path(__file__).resolve().parent)
TRAINER_CONFIG_NAME = "verl_difficulty_trainer"
