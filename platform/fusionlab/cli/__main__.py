"""``python -m fusionlab.cli``: the ``fusionlab`` command."""

import sys

from fusionlab.cli import main

sys.exit(main())
