"""Sphinx configuration of the bayes_inr documentation.

Built by ``make docs`` (``sphinx-build -W --keep-going -b html docs docs/_build/html``): every
warning fails the build, and ``make test`` (what CI runs) builds the docs after pytest.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(DOCS / "_ext"))
sys.path.insert(0, str(ROOT))

# arviz 0.23 announces its 1.0 refactor on import; the package pins the 0.23 API.
warnings.filterwarnings("ignore", message=".*ArviZ is undergoing", category=FutureWarning)
os.environ.setdefault("OMP_NUM_THREADS", "1")

import bayes_inr  # noqa: E402

project = "bayes_inr"
author = "bayes_inr authors"
copyright = "the bayes_inr authors, MIT licence"
version = release = bayes_inr.__version__

extensions = [
    "myst_nb",  # Markdown pages (myst-parser) and executed notebooks
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinxarg.ext",
    "cli_check",  # docs/_ext: every documented command parses; bayes_inr code is executed
    "docstrings",  # docs/_ext: plain-text habits of the docstrings read as reST
    "runpython",  # docs/_ext: the pages' Python examples, executed in this process
]

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "jupyter_execute", ".jupyter_cache", "**.ipynb_checkpoints"]
templates_path = ["_templates"]

# --- MyST
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
myst_dmath_double_inline = True

# --- the tutorial notebook (myst-nb): executed at every build, a failing cell fails it
nb_execution_mode = "force"
nb_execution_timeout = 300
nb_execution_raise_on_error = True
nb_execution_in_temp = True  # files a page writes go to a temporary directory
nb_execution_show_tb = True
nb_merge_streams = True

# --- API reference
autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
napoleon_numpy_docstring = True
napoleon_google_docstring = False
napoleon_use_rtype = False

# --- HTML
html_theme = "pydata_sphinx_theme"
html_title = f"bayes_inr {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": [],
}
html_static_path: list[str] = []
html_show_sourcelink = False

# --- the API reference page: every module of the package, grouped by the data flow; a module
# missing from API_GROUPS still appears (under "Other modules"), so the page never goes stale.
API_GROUPS = {
    "Foundation": ["core", "core.errors", "core.atomic", "core.outputs", "core.progress",
                   "core.provenance", "core.workers"],
    "Physics": ["physics", "physics.geometry", "physics.radon", "physics.resources"],
    "Data": ["data", "data.phantoms", "data.images", "data.sample", "data.benchmark",
             "data.cli"],
    "Model": ["model", "model.inr", "model.gop", "model.priors", "model.ctmodel",
              "model.catalog"],
    "Posterior (InferenceData)": ["posterior", "posterior.schema", "posterior.read",
                                  "posterior.store", "posterior.mixture"],
    "Evaluation": ["evaluation", "evaluation.metrics", "evaluation.convergence",
                   "evaluation.recalibration", "evaluation.stacking"],
    "Inference": ["inference", "inference.method", "inference.methods", "inference.config",
                  "inference.svi", "inference.guides",
                  "inference.mcmc", "inference.mcmc.potential", "inference.mcmc.settings",
                  "inference.mcmc.state", "inference.mcmc.kernels", "inference.mcmc.run",
                  "inference.mcmc.init", "inference.mcmc.precondition", "inference.mcmc.exact",
                  "inference.mcmc.summary",
                  "inference.single", "inference.ensemble", "inference.fit",
                  "inference.baselines", "inference.baselines.methods",
                  "inference.baselines.classical", "inference.baselines.tv",
                  "inference.baselines.evaluate"],
    "Figures and reports": ["plots", "plots.style", "plots.reconstruction", "plots.posterior",
                            "plots.comparison", "plots.trace", "plots.boxplots", "reports",
                            "reports.report", "reports.diagnostics", "reports.page"],
    "Experiments": ["experiments", "experiments.grid", "experiments.sweep",
                    "experiments.results", "experiments.ranking"],
    "Command lines": ["fit", "sweep", "report", "baselines", "recalibration", "stack",
                      "configs",
                      "demo"],
}


def _modules() -> list[str]:
    import pkgutil

    return sorted(info.name.removeprefix("bayes_inr.") for info in
                  pkgutil.walk_packages(bayes_inr.__path__, prefix="bayes_inr.")
                  if not info.name.endswith("__main__"))  # running it would run the command


def _write_api_page() -> None:
    present = _modules()
    listed = {name for names in API_GROUPS.values() for name in names}
    groups = dict(API_GROUPS)
    groups["Other modules"] = [name for name in present if name not in listed]
    lines = ["API reference", "=============", "",
             "Every module of the package, generated from its docstrings (numpy style). "
             "The package's top level exports :class:`~bayes_inr.physics.geometry.Geometry`, "
             ":class:`~bayes_inr.physics.radon.RadonOperator` and "
             ":class:`~bayes_inr.core.errors.InputError`.",
             ""]
    for title, names in groups.items():
        names = [name for name in names if name in present]
        if not names:
            continue
        lines += [title, "-" * len(title), "", ".. autosummary::", "   :toctree: generated", ""]
        lines += [f"   bayes_inr.{name}" for name in names]
        lines += [""]
    page = DOCS / "api" / "index.rst"
    page.parent.mkdir(exist_ok=True)
    text = "\n".join(lines)
    if not page.is_file() or page.read_text() != text:
        page.write_text(text)


_write_api_page()
