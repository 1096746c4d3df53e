"""Benchmark ``conv_transpose`` against PyTorch, ONNX Runtime, TensorFlow and JAX.

``python -m numba_deconv bench`` runs the standard workloads of
``cases.json`` (a copy of the project's case table shipped in this package)
and prints, per case, our median time, GFLOP/s, the percentage of the
float32 GEMM rate measured in the same run, each peer's median time, the
best peer and our speedup over it.

How it measures, so that the comparison is fair:

* Every library (ours included) runs in its own fresh Python process, one
  after the other, with ``--threads`` threads (default 2) set through the
  environment before anything is imported (``NUMBA_NUM_THREADS``,
  ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``, ...), through each
  library's own knob (``torch.set_num_threads``, ONNX Runtime session
  options, ``tf.config.threading``) and, where the machine has more CPUs than
  that, a CPU affinity mask. No two thread pools fight over the cores.
* All processes read the same inputs (saved as ``.npy`` by the parent);
  each writes its output back and the parent checks every peer's output
  against ours with ``allclose``, so a mis-specified peer call shows up as
  ``mismatch`` instead of a flattering number.
* A time is the median of many calls after warm-up (the first call, which
  compiles, is never timed); calls shorter than ~50 µs are batched.
* Useful flops only: ``2*N*C_in*(C_out/groups)*prod(kernel)*prod(in_spatial)``
  (no multiplications by inserted zeros).

Modules: ``cases`` (the table), ``peers`` (how each library is called),
``harness`` (timing and the processes), ``report`` (table and plot),
``cli``. They import only the standard library and NumPy at the top level.
"""

from .cases import DTYPES, Case, flop_count, load_cases, make_inputs, select_cases
from .cli import add_parser, configure_parser, main, run_from_args
from .harness import Timing, gemm_rate, measure, run, workspace_bytes
from .peers import OURS, PEER_LABELS, PEERS, NotApplicable, build_call, setup_library
from .report import Report, Result, Row, format_table, format_time, machine_description, plot
