"""`python -m bench` (or `make bench ARGS=...`): see bench/README.md."""

import sys

from bench.run import main

sys.exit(main())
