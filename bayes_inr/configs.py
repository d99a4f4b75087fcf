"""List the shipped configurations: ``python -m bayes_inr.configs`` (see
:mod:`bayes_inr.model.catalog`).
"""

from __future__ import annotations

import argparse
import sys

from .core.errors import InputError
from .model.catalog import resolve, shipped, shipped_dir, summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="List the shipped configurations (name: the "
                                     "first line of its comment); --show NAME prints one.")
    parser.add_argument("--show", metavar="NAME", help="print the configuration NAME")
    args = parser.parse_args(argv)
    if args.show:
        try:
            print(resolve(args.show).read_text(), end="")
        except InputError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        return 0
    names = shipped()
    width = max(map(len, names))
    for name, path in names.items():
        print(f"{name:<{width}}  {summary(path)}")
    print(f"\n({shipped_dir()}; use a name as --config NAME, a sweep grid as --grid NAME)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
