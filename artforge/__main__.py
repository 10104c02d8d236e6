"""`python -m artforge ...`: the same as the `artforge` command."""

import sys

from artforge.cli import main

sys.exit(main())
