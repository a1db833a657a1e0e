"""``python -m trenchcoat`` is the ``trenchcoat`` command."""

import sys

from trenchcoat.ops.cli import main

sys.exit(main())
