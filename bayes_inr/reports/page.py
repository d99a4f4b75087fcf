"""A report page: Markdown and self-contained HTML written side by side.
"""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


def _num(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    value = float(value)
    if math.isnan(value):
        return "-"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{digits}f}"


def _sig(value) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.3g}"


@dataclass
class _Page:
    """The page as blocks, rendered once as Markdown and once as HTML."""

    blocks: list[tuple] = field(default_factory=list)

    def heading(self, level: int, text: str) -> None:
        self.blocks.append(("h", level, text))

    def para(self, text: str) -> None:
        self.blocks.append(("p", text))

    def items(self, items: Sequence[str]) -> None:
        if items:
            self.blocks.append(("ul", list(items)))

    def pre(self, text: str) -> None:
        self.blocks.append(("pre", text))

    def table(self, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        self.blocks.append(("table", list(header), [list(r) for r in rows]))

    def figure(self, path: Path, alt: str) -> None:
        self.blocks.append(("img", path, alt))

    def markdown(self) -> str:
        out = []
        for block in self.blocks:
            kind = block[0]
            if kind == "h":
                out.append(f"{'#' * block[1]} {block[2]}")
            elif kind == "p":
                out.append(block[1])
            elif kind == "ul":
                out.append("\n".join(f"- {item}" for item in block[1]))
            elif kind == "pre":
                out.append(f"```\n{block[1]}\n```")
            elif kind == "table":
                header, rows = block[1], block[2]

                def line(cells):
                    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

                out.append("\n".join([line(header), "|" + "---|" * len(header),
                                      *(line(r) for r in rows)]))
            elif kind == "img":
                out.append(f"![{block[2]}]({block[1].name})")
        return "\n\n".join(out) + "\n"

    def html(self, title: str) -> str:
        esc = html.escape
        body = []
        for block in self.blocks:
            kind = block[0]
            if kind == "h":
                body.append(f"<h{block[1]}>{esc(block[2])}</h{block[1]}>")
            elif kind == "p":
                body.append(f"<p>{_inline(block[1])}</p>")
            elif kind == "ul":
                body.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in block[1])
                            + "</ul>")
            elif kind == "pre":
                body.append(f"<pre>{esc(block[1])}</pre>")
            elif kind == "table":
                head = "".join(f"<th>{esc(str(c))}</th>" for c in block[1])
                rows = "".join("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in r)
                               + "</tr>" for r in block[2])
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody>"
                            "</table>")
            elif kind == "img":
                data = base64.b64encode(block[1].read_bytes()).decode("ascii")
                body.append(f'<figure><img alt="{esc(block[2], quote=True)}" '
                            f'src="data:image/png;base64,{data}"><figcaption>'
                            f"{esc(block[1].name)}</figcaption></figure>")
        return _HTML.format(title=esc(title), body="\n".join(body))


def _inline(text: str) -> str:
    """Markdown's `code` and **bold** in a paragraph, as HTML (everything else escaped)."""
    text = html.escape(text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)


_HTML = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1250px; margin: 1.5em auto;
       padding: 0 1em; color: #222; line-height: 1.4; }}
h1, h2, h3 {{ font-weight: 600; }}
h2 {{ border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }}
th {{ background: #f2f2f2; }}
td:first-child, th:first-child {{ text-align: left; }}
pre {{ background: #f6f6f6; padding: 0.6em; overflow-x: auto; font-size: 0.85em; }}
figure {{ margin: 0.5em 0 1.5em; }}
figure img {{ max-width: 100%; border: 1px solid #eee; }}
figcaption {{ font-size: 0.8em; color: #666; }}
code {{ background: #f2f2f2; padding: 0 0.2em; }}
</style>
</head>
<body>
{body}
</body>
</html>
"""
