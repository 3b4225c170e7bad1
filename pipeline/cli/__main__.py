"""``python -m pipeline.cli``: the same as the ``defr`` command."""
import sys

from pipeline.cli.commands import main

sys.exit(main())
