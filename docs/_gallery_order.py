"""The order of the gallery's examples (sphinx-gallery's ``within_subsection_order``).

From the arithmetic to the applications, the machine's benchmark last;
examples not listed follow, by file name.
"""

ORDER = (
    "plot_tensorflow_worked_example.py",
    "plot_checkerboard.py",
    "plot_signal_upsampling.py",
    "plot_superresolution_lsqr.py",
    "plot_bench.py",
)


class ExampleOrder:
    """Sort key: an example's place in :data:`ORDER`, then its file name."""

    def __init__(self, src_dir):
        self.src_dir = src_dir

    def __call__(self, filename):
        return (ORDER.index(filename) if filename in ORDER else len(ORDER), filename)

    def __repr__(self):  # stable, so that sphinx-gallery's config hash is
        return f"ExampleOrder({ORDER!r})"
