"""``python -m cosmo_runner``."""

import sys

from cosmo_runner.cli import main

sys.exit(main())
