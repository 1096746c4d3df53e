"""Register tiles spelled out as source for the CPU kernels' products.

A tile of ``rows`` x ``vectors`` accumulators stays in registers only as
plain local values (see :mod:`.simd`), so :func:`spell_tile` writes each
shape's function out and compiles it inline; :func:`_passes` splits a tile
with more accumulators than the CPU's vector registers into passes that
fit.

Run tiles from functions compiled without reference counts
(``@njit(..., _nrt=False)``, which then make no arrays). Numba inlines a
tile by binding each array it takes to a variable of its own, and counts
a reference to it up on the way in and down on the way out; its pruning
keeps such pairs wherever a loop lies between them, as in a tile. Those
are atomic operations, and each waits for the tile's stores to leave: a
call of about 800 short tiles (50 -> 7 channels, k7 on 7x6 images) spent
30 % of its time in them, and phase tiles on small images 9-14 %
(benchmarks/TUNING.md). The same holds for any njit function that takes
arrays and runs in a loop.
"""

import numpy as np
from numba import njit

from . import simd


def _passes(rows, vectors):
    """The row and vector blocks a ``rows`` x ``vectors`` tile runs as, so
    that each pass keeps its accumulators, its vector operands and one
    broadcast scalar in :data:`.simd.REGISTERS`: ``(row_blocks, vector_blocks)``,
    lists of ``(first, count)``. One pass where the whole tile fits; else the
    block shape with the most multiply-adds per load (``r * v / (r + v)``),
    its passes evened out."""
    if rows * vectors + vectors + 1 <= simd.REGISTERS:
        return [(0, rows)], [(0, vectors)]
    fits = [(r * v / (r + v), r, v) for r in range(1, rows + 1) for v in range(1, vectors + 1)
            if r * v + v + 1 <= simd.REGISTERS]
    _, r, v = max(fits)

    def even(total, most):
        count = -(-total // most)
        sizes = [total // count + (i < total % count) for i in range(count)]
        return [(sum(sizes[:i]), size) for i, size in enumerate(sizes)]

    return even(rows, r), even(vectors, v)


def spell_tile(rows, vectors, scalar_stride, vector_rows, prefetch=False):
    """A register tile of ``rows`` x ``vectors`` accumulators, compiled inline.

    For ``m < rows``, ``v < vectors`` and every lane ``l`` it computes::

        acc[first + m*pitch + start[v] + l] = (that element if add else 0)
            + sum over k < k_total of scalars[s_at + scalar_stride*k + m]
                                      * vec[row(k) + start[v] + l]

    (``scalar_stride`` None: the tile's last argument, ``s_pitch``), where
    ``vector_rows`` says how the vector operand is laid out:
    ``"table"``: ``row(k) = table[k]`` and the vectors start at the
    arguments ``q0, q1, ...`` (signature ``acc, first, pitch, add, vec,
    table, q0, ..., scalars, s_at, k_total``); ``"strided"``: ``row(k) =
    v_at + k*v_pitch`` and the vectors are consecutive, ``start[v] =
    v*lanes`` (signature ``acc, first, pitch, add, vec, v_at, v_pitch,
    scalars, s_at, k_total``); ``"table_ranges"``: as ``"table"``, but the
    sum runs over ``k = c*n_taps + t`` for ``c < channels`` and ``t_first
    <= t < t_first + t_count`` only (signature ``acc, first, pitch, add,
    vec, table, q0, ..., scalars, s_at, channels, n_taps, t_first,
    t_count``): the pairs of a stretch of taps in each channel, in their
    order (``channels = 1, t_first = 0``: the ``k < t_count`` of
    ``"table"``). With ``prefetch`` (``"strided"``), the tile takes one
    more argument, ``ahead_rows``, and each step asks for row ``k +
    ahead_rows`` of the vectors (:func:`.simd.prefetch`): a stream of rows
    from memory, with more loads in flight than the prefetchers keep.
    A tile with more accumulators than the
    registers hold runs in passes over blocks of it (:func:`_passes`), each
    a whole sum over ``k``: every element sums its products in the same
    order either way.

    Spelled out as source because the accumulators must be plain local
    values to stay in registers (see the module docstring).
    """
    ranges = vector_rows == "table_ranges"
    table = vector_rows in ("table", "table_ranges")
    if table:
        starts = [f"q{v}" for v in range(vectors)]
        head = f"vec, table, {', '.join(starts)}"
    else:
        starts = ["0"] + [f"{v} * lanes" for v in range(1, vectors)]
        head = "vec, v_at, v_pitch"
    name = f"_tile{rows}x{vectors}_{vector_rows}"
    tail = ", ahead_rows" if prefetch else ""
    if scalar_stride is None:
        scalar_stride, tail = "s_pitch", ", s_pitch" + tail
    count = "channels, n_taps, t_first, t_count" if ranges else "k_total"
    lines = [f"def {name}(acc, first, pitch, add, {head}, scalars, s_at, {count}{tail}):",
             "    lanes = lanes_of(vec)"]
    # The sum's loop: over k, or over the taps of each channel (one more
    # indent for its body).
    loop = (["    for c in range(channels):",
             "        k_first = c * n_taps + t_first",
             "        for k in range(k_first, k_first + t_count):"] if ranges
            else ["    for k in range(k_total):"])
    body = "            " if ranges else "        "
    row_blocks, vector_blocks = _passes(rows, vectors)
    for r0, r_count in row_blocks:
        for v0, v_count in vector_blocks:
            pass_rows, pass_vectors = range(r0, r0 + r_count), range(v0, v0 + v_count)
            acc = {(m, v): f"a{m}_{v}" for m in pass_rows for v in pass_vectors}
            lines += ["    " + " = ".join(acc.values()) + " = zeros(vec)",
                      "    if add:"]
            lines += [f"        {a} = load(acc, first + {m} * pitch + {starts[v]})"
                      for (m, v), a in acc.items()]
            lines += loop
            if table:
                lines.append(f"{body}at = table[k]")
                lines += [f"{body}v{v} = load(vec, at + q{v})" for v in pass_vectors]
            else:
                lines.append(f"{body}at = np.uint64(v_at + k * v_pitch)")
                if prefetch:
                    lines.append(f"{body}ahead = np.uint64(v_at + (k + ahead_rows) * v_pitch)")
                    lines += [f"{body}prefetch(vec, ahead + np.uint64({starts[v]}))"
                              for v in pass_vectors]
                lines += [f"{body}v{v} = load(vec, at + np.uint64({starts[v]}))"
                          for v in pass_vectors]
            lines.append(f"{body}s_k = np.uint64(s_at + {scalar_stride} * k)")
            for m in pass_rows:
                lines.append(f"{body}s = scalars[s_k + np.uint64({m})]")
                lines += [f"{body}{acc[m, v]} = fma(v{v}, s, {acc[m, v]})"
                          for v in pass_vectors]
            lines += [f"    store(acc, first + {m} * pitch + {starts[v]}, {a})"
                      for (m, v), a in acc.items()]
    namespace = {"np": np, "lanes_of": simd.lanes, "zeros": simd.zeros, "load": simd.load,
                 "fma": simd.fma, "store": simd.store, "prefetch": simd.prefetch}
    exec("\n".join(lines), namespace)
    return njit(inline="always")(namespace[name])
