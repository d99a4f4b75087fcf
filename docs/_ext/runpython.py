"""Sphinx extension: the ``runpython`` directive, Python examples executed at build time.

The examples on the documentation's pages run in the Sphinx process itself (which has
imported the package for the API reference already), so a page costs no kernel start; only
the tutorial notebook runs in a Jupyter kernel (myst-nb). In MyST::

    ```{runpython}
    from bayes_inr import Geometry
    print(Geometry(64, 20))
    ```

shows the code, then what it printed (and the value of a final expression, as a notebook
does). The blocks of one page share a namespace and run in order, in a temporary working
directory of their own. An exception is a warning, so an error under ``sphinx-build -W``:
an example that no longer runs fails the build. Options: ``:hide-code:`` (run, show only the
output), ``:hide-output:``.
"""

from __future__ import annotations

import ast
import contextlib
import io
import os
import tempfile
import traceback

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

_SPACES: dict[str, dict] = {}  # docname -> (namespace, working directory)


def _space(docname: str) -> dict:
    if docname not in _SPACES:
        _SPACES[docname] = {"namespace": {"__name__": "__main__"},
                            "cwd": tempfile.mkdtemp(prefix="runpython-")}
    return _SPACES[docname]


def run(code: str, space: dict) -> str:
    """Execute ``code`` in ``space``; return what it printed (and a final expression's repr).

    Raises the code's exception, with the printed output so far attached as ``output``.
    """
    tree = ast.parse(code)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    out = io.StringIO()
    here = os.getcwd()
    try:
        os.chdir(space["cwd"])
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            exec(compile(tree, "<runpython>", "exec"), space["namespace"])
            if last is not None:
                value = eval(compile(ast.Expression(last.value), "<runpython>", "eval"),
                             space["namespace"])
                if value is not None:
                    print(repr(value))
    except BaseException as err:
        err.output = out.getvalue()
        raise
    finally:
        os.chdir(here)
    return out.getvalue()


class RunPython(SphinxDirective):
    has_content = True
    option_spec = {"hide-code": directives.flag, "hide-output": directives.flag}

    def run(self):
        code = "\n".join(self.content)
        result: list[nodes.Node] = []
        if "hide-code" not in self.options:
            source = nodes.literal_block(code, code, language="python")
            source["executed"] = True
            result.append(source)
        try:
            output = run(code, _space(self.env.docname))
        except Exception as err:
            text = "".join(traceback.format_exception_only(type(err), err)).strip()
            tb = "".join(traceback.format_tb(err.__traceback__)[1:])
            logger.warning(f"runpython: the example failed: {text}\n{tb}",
                           location=self.get_location())
            output = getattr(err, "output", "") + text
        if output.strip() and "hide-output" not in self.options:
            shown = nodes.literal_block(output.rstrip(), output.rstrip(), language="text")
            shown["classes"].append("runpython-output")
            result.append(shown)
        return result


def _forget(app, env, docname):
    _SPACES.pop(docname, None)


def setup(app):
    app.add_directive("runpython", RunPython)
    app.connect("env-purge-doc", _forget)
    return {"version": "1", "parallel_read_safe": False, "parallel_write_safe": True}
