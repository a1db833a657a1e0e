"""``python -m trenchcoat`` is the ``trenchcoat`` command."""

import sys

from trenchcoat.cli import main

sys.exit(main())
