"""``python -m cli ...``: the ``interp`` command without its console script."""

import sys

from cli import main

sys.exit(main())
