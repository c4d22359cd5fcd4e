"""``python -m bench.concurrency``."""

import sys

from bench.concurrency.cli import main

sys.exit(main())
