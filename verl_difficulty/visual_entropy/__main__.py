"""``python -m verl_difficulty.visual_entropy``; see the package docstring."""

import os
import sys

# The command only, before torch loads OpenMP: threads that finish a parallel region sleep instead of spinning at
# its barrier, so a second instance or a busy neighbour does not stall every region. The package __init__ imports
# nothing heavy, so this line runs before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from verl_difficulty.visual_entropy.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
