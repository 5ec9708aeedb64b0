"""``python -m verl_difficulty.data.prepare``."""

import sys

from verl_difficulty.data.prepare.cli import main

sys.exit(main())
