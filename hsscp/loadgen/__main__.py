"""``python -m hsscp.loadgen``: the load generator's commands on their own."""

import sys

from hsscp.loadgen.cli import main

sys.exit(main())
