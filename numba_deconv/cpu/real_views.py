"""Complex data on the real views of its arrays.

A complex call whose real twin (``numba_deconv._dispatch.real_twin``) takes
the columns kernel or, channels first, the tap rows runs on the real views
of its complex arrays instead of the twin: every part of an input position
is a position of the product, every part of a weight a column (the columns
kernel's ``complex_parts``) or a row (the tap rows'), and the fold forms the
complex sums from the four real products side by side
(:func:`.columns.columns_tiled`, :func:`.tap_rows.tap_rows_fold` with
:data:`.tap_rows.COMPLEX_VIEWS`). The weights are read once, where they lie,
and so is the input, where the twin has four values a weight and its input's
parts split.
"""

import math

import numpy as np

from .. import _compiled, config
from . import tiering, work_split
from .columns import pack_weights
from .driver import compile_kernel, kernel_signatures, run_columns_tiled
from .launch import parallel, thread_count
from .tap_rows import COMPLEX_VIEWS, tap_rows_fold, tap_rows_products
from .tiled import CHANNELS_FIRST


def ran_on_real_views(route, x, w, bias, out, channels_last=False, prepared=None) -> bool:
    """Whether a complex call whose real twin
    (``numba_deconv._dispatch.real_twin``, ``route`` the twin's) takes the
    columns kernel, or channels first the tap rows, ran on the real views
    of the complex ``x``, ``w`` (C_in, C_out/groups, *kernel), ``bias`` and
    ``out`` where they lie: a matrix product of the views, every part of an
    input position a position and every part of a weight a column (the
    columns kernel's ``complex_parts``) or a row (the tap rows'), whose
    fold forms the complex sums from the four real products side by side.
    A call of at most 3 dims (else the caller makes the twin's weights and
    runs the route as usual); while the kernel compiles in a helper
    process, the baseline in its order computes the call
    (:func:`.tiering.views_stand_in`), not the twin, which sums in another
    order: a call's bits never depend on whether its kernel was ready.
    ``prepared``, a dict kept by a caller that repeats calls
    with the same weights, keeps the views packed for the columns kernel
    (:func:`.columns.pack_weights`) in place of the twin's weights.

    The twin's weights are four real values a complex weight, where the
    views are two, read where they lie, and the twin's input is split into
    its parts where the views read it as it is: a complex 1024 -> 512 call
    on a 4x4 image took 73 times its real call's time with the twin's
    weights made whole, 3.7-4.9 times with them built per task, and
    3.0-3.3 times on the views."""
    if (route.kernel not in ("column_tiles", "tap_rows") or route.inner is not None
            or route.last_dim is not None or (channels_last and route.kernel == "tap_rows")):
        return False
    launch = route.launch
    real = out.real.dtype
    key = route.variant + (route.kernel,)
    if key not in _compiled.recorded():
        if tiering.views_stand_in(route.kernel, key, launch, x, w, bias, out, channels_last,
                                  compile_kernel, kernel_signatures):
            return True
        _compiled.ensure(key, compile_kernel, route.kernel, real)
    x_shape, w_shape, out_shape = launch.x_shape, launch.w_shape, launch.out_shape
    shapes = (x_shape, w_shape, out_shape, launch.stride, launch.dilation, launch.pad,
              launch.groups, real.itemsize, thread_count())
    c_in, c_out = x_shape[1] // 2, out_shape[1] // 2
    if channels_last:
        x_parts = x.view(real).reshape(x_shape[:1] + x_shape[2:] + (2 * c_in,))
        out_parts = out.view(real).reshape(out_shape[:1] + out_shape[2:] + (2 * c_out,))
    else:
        x_parts = x.view(real).reshape(x_shape[:1] + (c_in,) + x_shape[2:4]
                                       + (2 * x_shape[4],))
        out_parts = out.view(real).reshape(out_shape[:1] + (c_out,) + out_shape[2:4]
                                           + (2 * out_shape[4],))
    w_parts = np.ascontiguousarray(w).view(real).reshape(
        (w_shape[0] // 2, w_shape[1] // 2) + w_shape[2:4] + (2 * w_shape[4],))
    if prepared is not None:
        prepared.pop("twin", None)  # made by a first call, before the kernel was compiled
    if route.kernel == "tap_rows":
        tap_rows = work_split.tap_rows_parts_layout(*shapes)
        cols = np.empty((c_out * math.prod(w_parts.shape[2:]), tap_rows.tap_pitch), dtype=real)
        parallel(tap_rows_products, x_parts, w_parts, cols, launch.groups,
                 tap_rows.stretch_tiles, CHANNELS_FIRST, config.TAP_ROWS_PREFETCH_ROWS,
                 multiply_adds=launch.multiply_adds)
        parallel(tap_rows_fold, cols, *tap_rows.fold.tables(), bias, out_parts,
                 tap_rows.image_pitch, tap_rows.fold_chunk, COMPLEX_VIEWS,
                 multiply_adds=launch.multiply_adds)
        return True
    columns = work_split.columns_parts_layout(*shapes)
    packed = None
    if prepared is not None:
        made_for, packed = prepared.get("column_parts", (None, None))
        if made_for is not columns:  # a new thread count may lay out anew
            packed = pack_weights(w_parts, launch.groups, columns.channel_block)
            prepared["column_parts"] = columns, packed
    run_columns_tiled(x_parts, w_parts, packed, bias, out_parts, launch, columns,
             2 * math.prod(x_shape[2:]), channels_last, True)
    return True
