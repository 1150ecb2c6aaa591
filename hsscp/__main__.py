"""``python -m hsscp``: the same command as the ``hsscp`` console script."""

import sys

from hsscp.cli import main

sys.exit(main())
