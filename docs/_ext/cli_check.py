"""Sphinx extension: the examples in the docs must work with the code they document.

Two checks, each a warning (so an error under ``sphinx-build -W``) at the example's location:

1. Every command ``python -m bayes_inr.NAME ARGS`` in a literal block (console examples) is
   parsed by that command's real parser (:mod:`cli_parsers`): an unknown flag, a bad choice
   or a missing argument fails the build. Shipped configuration names given to
   ``--config`` / ``--grid`` (``mcd_20``, ``models/mcd_20.toml``, ``sweeps/mcd_cpu``) must
   resolve (:func:`bayes_inr.model.catalog.resolve`); ``--config none`` is the bare
   defaults. Commands are not run: a fit takes minutes.
2. Python code that uses the package (``bayes_inr`` in a Python literal block) must be
   executed at build time (a ``runpython`` block, :mod:`runpython`, or a notebook cell) or
   included from a test (``literalinclude`` of a file under ``tests/``, which CI runs),
   never a static block that could rot.

Lines are joined over trailing backslashes; ``#`` starts a comment (shell rules, shlex).
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

from docutils import nodes
from sphinx.util import logging

logger = logging.getLogger(__name__)

COMMAND = re.compile(r"python3? -m bayes_inr\.(\w+)")
SHELL = {"console", "bash", "shell", "sh", "text", "none", "default", ""}
PYTHON = {"python", "python3", "py", "ipython", "ipython3", "pycon"}
SHIPPED_FLAGS = ("--config", "--grid")


def _logical_lines(text: str) -> list[str]:
    lines, current = [], ""
    for raw in text.splitlines():
        line = raw.rstrip()
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        lines.append(current + line)
        current = ""
    if current:
        lines.append(current)
    return lines


def commands(text: str) -> list[tuple[str, list[str]]]:
    """``(module, argv)`` of every ``python -m bayes_inr.MODULE`` command in ``text``."""
    found = []
    for line in _logical_lines(text):
        match = COMMAND.search(line)
        if not match:
            continue
        line = line[match.start():].lstrip("$ ")
        try:
            words = shlex.split(line, comments=True)
        except ValueError as err:
            raise ValueError(f"cannot split {line!r}: {err}") from None
        # words: python -m bayes_inr.NAME ARGS...; stop at a pipe or a redirection
        argv = []
        for word in words[3:]:
            if word in ("|", "&&", ";", ">", "2>", "&"):
                break
            argv.append(word)
        if any(word.startswith("[") for word in argv):
            continue  # a usage synopsis ([--flag VALUE]), not an example
        found.append((match.group(1), argv))
    return found


def _check_shipped(argv: list[str]) -> str | None:
    from bayes_inr.core.errors import InputError
    from bayes_inr.model.catalog import resolve

    for flag, value in zip(argv, argv[1:], strict=False):
        if flag not in SHIPPED_FLAGS or (flag, value) == ("--config", "none"):
            continue  # --config none: the bare defaults
        shipped = value.startswith(("models/", "sweeps/")) or not value.endswith(".toml")
        if not shipped:
            continue  # a user's own file, named as an example
        try:
            resolve(value)
        except InputError as err:
            return str(err)
    return None


def check_command(module: str, argv: list[str]) -> str | None:
    """None when ``argv`` parses with ``python -m bayes_inr.MODULE``'s parser, else why not."""
    import cli_parsers

    try:
        parser = cli_parsers.get(module)
    except ImportError as err:
        return f"python -m bayes_inr.{module}: no such command line ({err})"
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            parser.parse_args(argv)
    except SystemExit as stop:
        if stop.code not in (0, None):  # --help exits 0
            return err.getvalue().strip().splitlines()[-1]
    return _check_shipped(argv)


TESTS = Path(__file__).resolve().parents[2] / "tests"
"""Code included from here (``literalinclude``) is run by the test suite in CI."""


def _executed(node: nodes.Node) -> bool:
    """Whether a literal block is executed: a ``runpython`` block or the source of a myst-nb
    cell (at build time), or a ``literalinclude`` of a file under ``tests/`` (by the tests)."""
    if node.get("executed"):
        return True
    source = node.get("source")
    if source and Path(source).resolve().is_relative_to(TESTS):
        return True
    parent = node.parent
    while parent is not None:
        if isinstance(parent, nodes.container) and parent.get("nb_element", "").startswith(
                "cell_code"):
            return True
        parent = parent.parent
    return False


def check_doctree(app, doctree) -> None:
    for block in doctree.findall(nodes.literal_block):
        language = str(block.get("language", "")).lower()
        text = block.astext()
        if language in PYTHON and "bayes_inr" in text and not _executed(block):
            logger.warning("Python example using bayes_inr in a static block: make it a "
                           "{runpython} block (executed at build time)", location=block)
            continue
        if language not in SHELL or "bayes_inr" not in text:
            continue
        try:
            found = commands(text)
        except ValueError as err:
            logger.warning(str(err), location=block)
            continue
        for module, argv in found:
            problem = check_command(module, argv)
            if problem:
                logger.warning(f"documented command 'python -m bayes_inr.{module} "
                               f"{' '.join(argv)}' does not parse: {problem}", location=block)


def setup(app):
    app.connect("doctree-read", check_doctree)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
