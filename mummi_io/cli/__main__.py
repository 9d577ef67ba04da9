"""``python -m mummi_io.cli``: the same as the ``mummi-io`` command."""

import sys

from . import main

sys.exit(main())
