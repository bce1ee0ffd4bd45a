"""``python -m dlexp``."""

import sys

from dlexp.cli import main

sys.exit(main())
