"""Progress bars only where a person watches them.

A tqdm bar redraws itself with carriage returns: on a terminal that is one line that moves,
in a log file or a pipe (``nohup``, CI, a sweep's worker log) hundreds of fragments of one
line. Runs draw bars only on a terminal; elsewhere an optimisation prints one line as it
starts (``map: 2000 steps to go``), and the one-line messages (a finished chain or member,
warnings, the summary) are printed everywhere.
"""

from __future__ import annotations

import sys


def progress_bars(progress: bool) -> bool:
    """Whether a run asked for ``progress`` draws its bars: only when stderr, where tqdm
    writes, is a terminal."""
    return progress and sys.stderr.isatty()
