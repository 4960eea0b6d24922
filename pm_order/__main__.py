"""`python -m pm_order` is the `pm-order` command."""

import sys

from pm_order.cli import main

sys.exit(main())
