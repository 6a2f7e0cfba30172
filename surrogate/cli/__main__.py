"""``python -m surrogate.cli``: the same as the ``surrogate`` console script."""

import sys

from surrogate.cli import main

sys.exit(main())
