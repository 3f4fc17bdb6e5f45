"""``python -m wanir``: the ``wanir`` command line."""
import sys

from wanir.cli import main

sys.exit(main())
