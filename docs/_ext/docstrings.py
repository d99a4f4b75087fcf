"""Sphinx extension: read the package's plain-text docstrings as reStructuredText.

The docstrings are numpy style and mostly valid reST, with three plain-text habits that
reST reads otherwise; this fixes them at build time instead of editing the code:

- ``|x - m|`` (an absolute value) would be a substitution reference: ``|`` is escaped
  outside inline literals and literal blocks;
- ``(*draws, N, N)`` (a shape with leading draw dimensions) would open an emphasis that
  never closes: a single ``*`` that opens one without a closing ``*`` on its line is
  escaped (``*Window*`` stays emphasis);
- an indented block of commands (``python -m ...``) after a paragraph that does not end
  with ``::`` would be a block quote or definition list: it becomes a literal block.
"""

from __future__ import annotations

import re

LITERAL = re.compile(r"(``.*?``|:\w+:`[^`]*`|`[^`]*`_?)")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


STAR = re.compile(r"(?<![*\\])\*(?!\*)")


def _stars(text: str) -> str:
    """Escape every single ``*`` that would open an emphasis left unclosed on the line."""
    out, pos = [], 0
    stars = [m.start() for m in STAR.finditer(text)]
    k = 0
    while k < len(stars):
        i = stars[k]
        opens = i + 1 < len(text) and not text[i + 1].isspace() and (
            i == 0 or text[i - 1] in " ([{,'\"-/")
        closer = next((j for j in stars[k + 1:] if not text[j - 1].isspace()), None)
        if opens and closer is None:
            out.append(text[pos:i] + "\\*")
            pos = i + 1
        elif opens:
            k = stars.index(closer)  # keep the pair
        k += 1
    return "".join(out) + text[pos:]


def _escape(line: str) -> str:
    parts = LITERAL.split(line)
    for i in range(0, len(parts), 2):  # even parts are outside literals and roles
        parts[i] = _stars(parts[i].replace("|", r"\|"))
    return "".join(parts)


def fix(lines: list[str]) -> list[str]:
    out: list[str] = []
    literal_indent = None  # indent of the paragraph that opened a literal block
    previous = ""  # the last non-blank line
    for line in lines:
        if not line.strip():
            out.append(line)
            continue
        indent = _indent(line)
        if literal_indent is not None and indent > literal_indent:
            out.append(line)
            continue
        literal_indent = None
        starts_commands = line.lstrip().startswith(("python ", "$ "))
        if previous.rstrip().endswith("::") and indent > _indent(previous):
            literal_indent = _indent(previous)
            out.append(line)
        elif starts_commands and (not previous or indent > _indent(previous)):
            # a command block without "::": make it a literal block
            base = _indent(previous) if previous else 0
            if out and out[-1].strip():
                out.append("")
            out += [" " * base + "::", ""]
            literal_indent = base
            out.append(line)
        else:
            out.append(_escape(line))
        previous = line
    return out


def process(app, what, name, obj, options, lines):
    lines[:] = fix(lines)


def setup(app):
    app.connect("autodoc-process-docstring", process)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
