"""`python -m cli` is the `pm-order` command."""

import sys

from cli.main import main

sys.exit(main())
