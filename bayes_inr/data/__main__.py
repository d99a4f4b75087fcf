"""``python -m bayes_inr.data``: write the benchmark datasets (:mod:`bayes_inr.data.cli`)."""

import sys

from .cli import main

sys.exit(main())
