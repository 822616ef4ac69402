"""``python -m reidkit ...``: the ``reidkit`` command (also what ``torchrun -m reidkit train ...`` runs)."""
from __future__ import annotations

import sys

from reidkit.cli import main

if __name__ == "__main__":
    sys.exit(main())
