"""``python -m tl_core``: see `tl_core.cli`."""

import sys

from tl_core.cli import main

sys.exit(main())
