"""``python -m server_ext`` is ``abaco-nb``."""

import sys

from .cli import main

sys.exit(main())
