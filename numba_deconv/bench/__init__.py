"""Benchmark ``conv_transpose``, ``conv`` and the weight gradients against
PyTorch, ONNX Runtime, TensorFlow and JAX.

``python -m numba_deconv bench [--op OP]`` runs the standard workloads of
``cases.json`` (a copy of the project's case table shipped in this package)
as one operation of ``cases.OPS`` and prints, per case, our median time, GFLOP/s, the percentage of the
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
  (no multiplications by inserted zeros), for every op.
* The ops (``cases.OPS``): ``conv_transpose`` runs each case as written;
  ``conv`` runs the convolution whose adjoint the case is (input shaped
  like the case's output, the same weight read as conv's ``(C_out,
  C_in/groups, *k)``, result shaped like the case's input);
  ``conv_weight_grad`` and ``conv_transpose_weight_grad`` the weight
  gradients of those two, against PyTorch's ``aten.convolution_backward``
  computing the weight gradient alone. ``peers.ADAPTERS`` says which
  library has an adapter for which op; peers without one are not run.

Modules: ``cases`` (the table), ``peers`` (how each library is called),
``harness`` (timing and the processes), ``report`` (table and plot),
``cli``. They import only the standard library and NumPy at the top level.
"""

from .cases import DTYPES, OPS, Case, Op, flop_count, load_cases, make_inputs, select_cases
from .cli import add_parser, configure_parser, main, run_from_args
from .harness import Timing, gemm_rate, measure, run, workspace_bytes
from .peers import ADAPTERS, OURS, PEER_LABELS, PEERS, NotApplicable, build_call, \
    setup_library
from .report import Report, Result, Row, format_table, format_time, machine_description, plot
