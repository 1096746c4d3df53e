"""The cold start, tracked over time like the run time.

``import numba_deconv`` plus the first ``conv_transpose`` call in a new
process with an empty Numba cache, in seconds (``python -m numba_deconv
bench --cold`` gives the same beside PyTorch). One case of each spatial
rank, the tiny worked example, and dcgan_2d, a call big enough that it
waited 19 s for the phase tiles to compile until the baseline in their
order stood in for calls up to ``config.BASELINE_TILES_MAX_MULTIPLY_ADDS``
(2.9 s since). The same for ``conv`` and ``conv_weight_grad``, whose
first calls compiled their kernels in place (``conv`` 8-14 s, the
weight gradient 8-10 s) until baselines of their own stood in. And
``conv_transpose`` channels last and on complex data, whose first calls
compiled the transposes, or the complex parts' split and merge, in place
(2.5-2.8 s, against 1.7-1.9 channels first and real) until NumPy's
copies stood in for them.
"""

import json
import os
import subprocess
import sys
import tempfile

from ._common import CASES, conv_kwargs, make_inputs

_CHILD = """
import json, sys, time
spec = json.loads(sys.argv[1])
import numpy as np
inputs = [np.ones(shape, spec["dtype"]) for shape in spec["shapes"]]
if spec.get("channels_last"):
    inputs[0] = np.ascontiguousarray(np.moveaxis(inputs[0], 1, -1))
start = time.perf_counter()
import numba_deconv
getattr(numba_deconv, spec["op"])(*inputs, **spec["kwargs"])
print(time.perf_counter() - start)
try:  # commits whose tuned kernels compile in a helper process: let it finish
    from numba_deconv.cpu import tiering
    tiering.wait()
except ImportError:
    pass
"""


class ColdStart:
    params = (["tiny_seed", "signal_1d", "unet_2d", "vol_3d", "dcgan_2d"], ["float32"])
    param_names = ["case", "dtype"]
    number = 1
    repeat = 1
    timeout = 600

    def track_cold_first_call(self, name, dtype):
        return _cold_first_call("conv_transpose", name, dtype)

    track_cold_first_call.unit = "seconds"


class ColdStartOtherOps:
    params = (["conv", "conv_weight_grad"], ["unet_2d", "depthwise_2d", "dcgan_2d"],
              ["float32"])
    param_names = ["op", "case", "dtype"]
    number = 1
    repeat = 1
    timeout = 600

    def track_cold_first_call(self, op, name, dtype):
        return _cold_first_call(op, name, dtype)

    track_cold_first_call.unit = "seconds"


class ColdStartVariants:
    params = (["channels_last", "complex64"], ["tiny_seed", "unet_2d", "depthwise_2d"])
    param_names = ["variant", "case"]
    number = 1
    repeat = 1
    timeout = 600

    def track_cold_first_call(self, variant, name):
        if variant == "channels_last":
            return _cold_first_call("conv_transpose", name, "float32", channels_last=True)
        return _cold_first_call("conv_transpose", name, variant)

    track_cold_first_call.unit = "seconds"


def _cold_first_call(op, name, dtype, channels_last=False):
    """Seconds to import the package and call ``op`` once on the case's
    inputs (``make_inputs``' shapes, all ones; the first channels last
    where ``channels_last``) in a new process with an empty Numba cache."""
    case = CASES[name]
    shapes = [a.shape for a in make_inputs(case, "float32", op=op)]
    kwargs = dict(conv_kwargs(case, op), **({"data_format": "channels_last"} if channels_last
                                            else {}))
    spec = dict(op=op, dtype=dtype, kwargs=kwargs, shapes=shapes, channels_last=channels_last)
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, NUMBA_NUM_THREADS="2",
                   NUMBA_DECONV_BACKGROUND_COMPILE="1")
        done = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(spec)], env=env,
                              cwd=cache, capture_output=True, text=True, check=True)
    return float(done.stdout.split()[-1])
