"""The argparse parsers of the package's command lines, for sphinx-argparse and cli_check.

``fit``, ``report`` and ``sweep`` have a ``parser()`` function and ``baselines`` a
``build_parser()``; ``data`` (its ``cli`` module), ``demo`` and ``configs`` build their
parser inside ``main``.
For those, :func:`_captured` calls ``main`` with ``parse_args`` replaced by a function that
hands the parser back before anything else runs, so the reference is still generated from
the real parser (no copy of its flags here).
"""

from __future__ import annotations

import argparse
import importlib


class _Parser(Exception):
    def __init__(self, parser: argparse.ArgumentParser):
        super().__init__("parser captured")
        self.parser = parser


def _captured(module: str) -> argparse.ArgumentParser:
    """The parser that ``bayes_inr.<module>.main`` builds, taken from its ``parse_args`` call."""
    main = importlib.import_module(f"bayes_inr.{module}").main
    original = argparse.ArgumentParser.parse_args

    def hand_back(self, *args, **kwargs):
        raise _Parser(self)

    argparse.ArgumentParser.parse_args = hand_back
    try:
        main([])
    except _Parser as found:
        return found.parser
    finally:
        argparse.ArgumentParser.parse_args = original
    raise RuntimeError(f"bayes_inr.{module}.main returned without parsing arguments")


def fit() -> argparse.ArgumentParser:
    from bayes_inr.fit import parser

    return parser()


def sweep() -> argparse.ArgumentParser:
    from bayes_inr.sweep import parser

    return parser()


def report() -> argparse.ArgumentParser:
    from bayes_inr.report import parser

    return parser()


def baselines() -> argparse.ArgumentParser:
    from bayes_inr.baselines import build_parser

    return build_parser()


def data() -> argparse.ArgumentParser:
    return _captured("data.cli")  # python -m bayes_inr.data runs bayes_inr.data.cli


def demo() -> argparse.ArgumentParser:
    return _captured("demo")


def configs() -> argparse.ArgumentParser:
    parser = _captured("configs")
    parser.prog = "python -m bayes_inr.configs"
    return parser


def recalibration() -> argparse.ArgumentParser:
    from bayes_inr.recalibration import parser

    return parser()


def stack() -> argparse.ArgumentParser:
    from bayes_inr.stack import parser

    return parser()


PARSERS = {"fit": fit, "sweep": sweep, "report": report, "baselines": baselines, "data": data,
           "demo": demo, "configs": configs, "recalibration": recalibration, "stack": stack}
"""Module name (``python -m bayes_inr.NAME``) -> function returning its parser: the command
lines of the CLI reference."""


def get(module: str) -> argparse.ArgumentParser:
    """The parser of ``python -m bayes_inr.MODULE``: from :data:`PARSERS`, else the module's
    ``parser()`` or ``build_parser()``, else captured from its ``main``."""
    if module in PARSERS:
        return PARSERS[module]()
    target = importlib.import_module(f"bayes_inr.{module}")  # ImportError: no such module
    for name in ("parser", "build_parser"):
        if callable(getattr(target, name, None)):
            return getattr(target, name)()
    if not callable(getattr(target, "main", None)):
        raise ImportError(f"bayes_inr.{module} has no command line (no main)")
    return _captured(module)
