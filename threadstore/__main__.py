"""``python -m threadstore``: the ``threadstore`` command (threadstore.cli)."""

import sys

from threadstore.cli import main

sys.exit(main())
