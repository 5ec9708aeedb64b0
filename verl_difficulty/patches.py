"""``python -m verl_difficulty.patches --list``: every place verl-difficulty changes verl (the extensions table).

The table itself is ``verl_difficulty/verl_glue/patches.py``.
"""

from verl_difficulty.verl_glue.patches import main

if __name__ == "__main__":
    raise SystemExit(main())
