"""``python -m sessiondb``: the ``sessiondb`` command (see :mod:`sessiondb.cli`)."""

from __future__ import annotations

import sys

from sessiondb.cli import main

if __name__ == "__main__":
    sys.exit(main())
