"""``python -m verl_difficulty.data.diva_generate``."""

import sys

from verl_difficulty.data.diva_generate.cli import main

sys.exit(main())
