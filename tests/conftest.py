"""Test-wide setup: the checkout on ``sys.path``, so tests import the harnesses in ``examples/``."""

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
