"""``python -m robust_style`` runs the CLI."""

import sys

from robust_style.cli import main

sys.exit(main())
