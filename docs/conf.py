"""Sphinx configuration of the numba_deconv documentation.

Build (from the repository root, warnings are errors)::

    python -m pip install ".[docs]"      # or: pip install -r docs/requirements.txt .
    python -m sphinx -W --keep-going -b html docs docs/_build/html

The gallery (``examples/plot_*.py``) and the ``.. plot::`` figures run at
build time; nothing generated is committed (``docs/.gitignore``).
"""

from __future__ import annotations

import os
import sys
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# Document the checkout the docs live in, installed or not; HERE for
# _gallery_order.
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

# Figures are drawn off-screen; gallery and plot directive both use Agg.
os.environ.setdefault("MPLBACKEND", "Agg")

import numba_deconv  # noqa: E402


def _write_readme_page():
    """docs/readme.md: the repository's README.md as a page of this site.

    Links to pages of docs/ become links to those pages; links to other
    files of the repository (which are no pages here) become their path in
    code, so that whatever the README links to, the build stays clean.
    Generated at every build, never committed (docs/.gitignore).
    """
    import re

    link = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")

    def relink(match):
        bang, label, target = match.groups()
        if re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", target) or target.startswith("#"):
            return match.group(0)                      # a URL or an anchor of the page
        path, _, anchor = target.partition("#")
        if bang:                                       # an image: from docs/'s point of view
            return f"![{label}](../{path})"
        if path.startswith("docs/") and path.endswith((".md", ".rst")) and os.path.exists(
                os.path.join(ROOT, path)):
            page = path[len("docs/"):].rsplit(".", 1)[0]
            return f"[{label}]({page}.{path.rsplit('.', 1)[1]}{'#' + anchor if anchor else ''})"
        return label if label.strip("`") == path else f"{label} (`{path}`)"

    lines, fenced = [], False
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        for line in f:
            if line.lstrip().startswith(("```", "~~~")):
                fenced = not fenced
            lines.append(line if fenced else link.sub(relink, line))
    text = "% Generated from README.md by docs/conf.py; edit README.md instead.\n\n" + "".join(lines)
    target = os.path.join(HERE, "readme.md")
    try:
        with open(target, encoding="utf-8") as f:
            unchanged = f.read() == text
    except OSError:
        unchanged = False
    if not unchanged:                                  # keep Sphinx's incremental builds
        with open(target, "w", encoding="utf-8") as f:
            f.write(text)


_write_readme_page()

# -- Project -----------------------------------------------------------------

project = "numba_deconv"
author = "the numba_deconv developers"
copyright = "the numba_deconv developers"  # noqa: A001
release = numba_deconv.__version__
version = ".".join(release.split(".")[:2])

# -- Extensions --------------------------------------------------------------

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_parser",                         # docs/semantics.md, docs/architecture.md
    "sphinx_gallery.gen_gallery",          # examples/ -> docs/auto_examples/
    "matplotlib.sphinxext.plot_directive",  # figures of the semantics page
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_templates", "_gallery_order.py", "requirements.txt",
                    "auto_examples/*.ipynb", "auto_examples/*.py",
                    "auto_examples/*.zip", "auto_examples/*.md5",
                    "auto_examples/*.json", "auto_examples/*.codeobj.json"]
templates_path = ["_templates"]
nitpicky = False

# -- autodoc / autosummary / numpydoc ----------------------------------------

autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {}
autodoc_typehints = "none"          # the numpydoc sections state the types
autodoc_member_order = "bysource"

numpydoc_show_class_members = False  # Plan's methods are listed explicitly
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_attributes_as_param_list = True
# numpydoc's style checks (GL01, SA01, ...) are the docstrings' business,
# checked in review; the build only requires that every docstring parses.
numpydoc_validation_checks = set()

# -- MyST (the Markdown pages) -----------------------------------------------

myst_heading_anchors = 3
myst_enable_extensions = ["dollarmath"]

# -- Matplotlib plot directive -----------------------------------------------

plot_include_source = True
plot_html_show_source_link = False
plot_html_show_formats = False
plot_formats = [("png", 100)]
plot_rcparams = {"figure.autolayout": True}
plot_pre_code = "import numpy as np\nimport matplotlib.pyplot as plt\nimport numba_deconv\n"

# -- sphinx-gallery ----------------------------------------------------------

sphinx_gallery_conf = {
    "examples_dirs": os.path.join(ROOT, "examples"),
    "gallery_dirs": os.path.join(HERE, "auto_examples"),
    # Run the plot_* scripts. deblur_lsqr.py is a command-line script (tested
    # by tests/test_examples.py); plot_superresolution_lsqr.py is its gallery
    # counterpart.
    "filename_pattern": r"/plot_",
    "ignore_pattern": r"(__init__|deblur_lsqr)\.py$",
    "write_computation_times": False,
    "within_subsection_order": "_gallery_order.ExampleOrder",
    "download_all_examples": False,
    "remove_config_comments": True,
    "show_memory": False,
    "plot_gallery": "True",
    "abort_on_example_error": True,
    "only_warn_on_example_error": False,
    "capture_repr": ("_repr_html_", "__repr__"),
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "reset_modules": ("matplotlib",),
    "min_reported_time": 1,
    "thumbnail_size": (320, 224),
    "backreferences_dir": None,
}

# Numba's and NumPy's chatter must not turn into build errors, nor matplotlib's
# notice that Agg cannot show() figures.
warnings.filterwarnings("ignore", message="Matplotlib is currently using agg")
warnings.filterwarnings("ignore", message="FigureCanvasAgg is non-interactive")

# -- HTML --------------------------------------------------------------------

html_theme = "pydata_sphinx_theme"
html_title = f"numba_deconv {release}"
html_static_path = []
html_show_sourcelink = False
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "navbar_align": "left",
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_context = {"default_mode": "light"}
