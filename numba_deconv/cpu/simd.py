"""SIMD vectors for Numba kernels: just enough for a register-tiled product.

Numba has no vector type, and LLVM keeps a tile's accumulators in
registers only when they are plain SSA values: written as array elements
they live in L1 and every multiply-add costs a load and a store (the
previous 4x4 tiles topped out at 60-90 GFLOP/s per core here). A
:class:`Vector` is an LLVM ``<lanes x float>`` value, so a tile of them
stays in registers for a whole reduction, and each multiply-add compiles to
one ``vfmadd`` with a broadcast weight.

A vector is :data:`VECTOR_BYTES` wide: one register of the widest kind
that the CPU Numba compiles for has (AVX-512: 64 bytes, AVX2: 32, else 16),
and a tile keeps no more accumulators live than :data:`REGISTERS` leaves
room for: with 16 registers (AVX2) the main 8 x 3 tile runs as two passes
of 4 x 3. Split across narrower registers, one AVX-512-wide vector per
accumulator made 48 of them on AVX2, and they spilled (dcgan_2d ran at a
third of PyTorch's speed on a Zen 3).

Only what the tiled kernel needs, for float32 and float64 1-D arrays:
:func:`load`, :func:`store` (and :func:`load_part`, :func:`store_part`: the
first lanes alone, in masked loads and stores), :func:`zeros`, :func:`splat`,
:func:`add`, :func:`mul`, :func:`fma` (vector times a broadcast scalar, or a vector, plus vector),
:func:`sum_lanes`,
:func:`store_interleaved` (the lanes of several vectors, interleaved, as
one stretch: the output phases of a row, in shuffles rather than strided
scalar stores; :func:`store_interleaved_first` its first elements, in
masked stores; :func:`interleave_rows_add` a run-time number of rows from
anywhere, each plus an addend) and :func:`load_ways` (every ``ways``-th
lane: complex parts, channels side by side); square
transposes (:func:`transpose_tile`, with an addend, in non-temporal
stores, and :func:`transpose_tile_part` for a part of the square in masked
loads and stores) and :func:`store_fence`; plus :func:`aligned` and
:func:`lanes_before_boundary` for scratch arrays and tiles that start on a
vector boundary. The register tiles built of them are spelled in
:mod:`.register_tiles`, the task counters that several threads share are
in :mod:`.atomics`. Loads and stores are unaligned and unchecked, like
``boundscheck=False`` indexing: the caller keeps every lane inside the array.
"""

import platform as _platform

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.core import codegen as _codegen
from numba.core import config as _numba_config
from numba.core.errors import TypingError
from numba.extending import intrinsic, models, register_model


def _vector_registers(features: str, machine: str) -> tuple:
    """``(bytes per vector register, vector registers)`` of a CPU with LLVM
    feature string ``features`` (``"+avx2,-avx512f,..."``) and architecture
    ``machine``."""
    enabled = {f[1:] for f in features.split(",") if f.startswith("+")}
    if "avx512f" in enabled:
        return 64, 32
    if "avx" in enabled:
        return 32, 16
    return 16, 32 if machine.lower() in ("aarch64", "arm64") else 16


#: Bytes per vector (AVX-512: 64, 16 float32 or 8 float64) and the CPU's
#: vector registers, for the features Numba compiles for (its
#: NUMBA_CPU_FEATURES, else the host's). Those features are part of the key
#: of Numba's on-disk cache, so code compiled for one width is never loaded
#: where another is chosen.
VECTOR_BYTES, REGISTERS = _vector_registers(
    _numba_config.CPU_FEATURES if _numba_config.CPU_FEATURES is not None
    else _codegen.get_host_cpu_features(), _platform.machine())
#: Vectors per row of the kernels' main register tiles: 8 rows x 3 vectors,
#: 24 accumulators of AVX-512's 32 registers, leaving room for the vector
#: operands and the broadcast scalar (elsewhere
#: :func:`.register_tiles.spell_tile` runs them in passes that fit).
TILE_VECTORS = 3
#: Bytes per cache line (x86-64 and the Arm cores Numba targets).
LINE_BYTES = 64


def tile_width(itemsize):
    """Elements per row of a main register tile, for elements of ``itemsize``."""
    return TILE_VECTORS * VECTOR_BYTES // itemsize


class Vector(types.Type):
    """Numba type of a SIMD vector of ``lanes`` elements of ``dtype``."""

    def __init__(self, dtype):
        self.dtype = dtype
        self.lanes = VECTOR_BYTES * 8 // dtype.bitwidth
        super().__init__(name=f"Vector({dtype} x {self.lanes})")


@register_model(Vector)
class _VectorModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        element = dmm.lookup(fe_type.dtype).get_value_type()
        super().__init__(dmm, fe_type, ir.VectorType(element, fe_type.lanes))


def _vector_of(array, what):
    if not (isinstance(array, types.Array) and array.ndim == 1
            and array.dtype in (types.float32, types.float64)):
        raise TypingError(f"simd.{what}: needs a 1-D float32/float64 array, got {array}")
    return Vector(array.dtype)


def _address(context, builder, array_type, array, index):
    data = context.make_array(array_type)(context, builder, array).data
    return builder.gep(data, [index])


@intrinsic
def lanes(typingctx, array):
    """Elements per vector of ``array``'s dtype (a compile-time constant)."""
    count = _vector_of(array, "lanes").lanes

    def codegen(context, builder, signature, args):
        return context.get_constant(types.intp, count)

    return types.intp(array), codegen


@intrinsic
def load(typingctx, array, index):
    """The vector ``array[index : index + lanes]``."""
    vector = _vector_of(array, "load")

    def codegen(context, builder, signature, args):
        address = _address(context, builder, signature.args[0], args[0], args[1])
        vector_type = context.get_value_type(signature.return_type)
        pointer = builder.bitcast(address, vector_type.as_pointer())
        return builder.load(pointer, align=vector.dtype.bitwidth // 8)

    return vector(array, index), codegen


@intrinsic
def store(typingctx, array, index, value):
    """``array[index : index + lanes] = value``."""
    if _vector_of(array, "store") != value:
        raise TypingError(f"simd.store: {value} does not match {array}")

    def codegen(context, builder, signature, args):
        address = _address(context, builder, signature.args[0], args[0], args[1])
        pointer = builder.bitcast(address, args[2].type.as_pointer())
        builder.store(args[2], pointer, align=value.dtype.bitwidth // 8)
        return context.get_dummy_value()

    return types.none(array, index, value), codegen


@intrinsic
def store_streaming(typingctx, array, index, value):
    """:func:`store` with a non-temporal store: ``array[index]`` must start
    a vector-aligned cache line. It goes to memory without first reading
    the line into the cache, weakly ordered: a kernel that makes such
    stores ends with :func:`store_fence`."""
    if _vector_of(array, "store_streaming") != value:
        raise TypingError(f"simd.store_streaming: {value} does not match {array}")

    def codegen(context, builder, signature, args):
        address = _address(context, builder, signature.args[0], args[0], args[1])
        pointer = builder.bitcast(address, args[2].type.as_pointer())
        stored = builder.store(args[2], pointer, align=VECTOR_BYTES)
        stored.set_metadata("nontemporal", builder.module.add_metadata(
            [ir.Constant(ir.IntType(32), 1)]))
        return context.get_dummy_value()

    return types.none(array, index, value), codegen


@intrinsic
def load_part(typingctx, array, index, count):
    """:func:`load` of the first ``count`` lanes (1 to ``lanes``), the others
    zero: no element past ``array[index + count - 1]`` is read."""
    vector = _vector_of(array, "load_part")

    def codegen(context, builder, signature, args):
        address = _address(context, builder, signature.args[0], args[0], args[1])
        vector_type = context.get_value_type(vector)
        count = context.cast(builder, args[2], signature.args[2], types.intp)
        return _masked(builder, "load", vector_type,
                       builder.bitcast(address, vector_type.as_pointer()),
                       ir.Constant(ir.IntType(32), vector.dtype.bitwidth // 8),
                       _lanes_below(builder, vector.lanes, count),
                       ir.Constant(vector_type, [0.0] * vector.lanes))

    return vector(array, index, count), codegen


@intrinsic
def store_part(typingctx, array, index, value, count):
    """:func:`store` of the first ``count`` lanes (1 to ``lanes``) of
    ``value``: no element past ``array[index + count - 1]`` is written."""
    if _vector_of(array, "store_part") != value:
        raise TypingError(f"simd.store_part: {value} does not match {array}")

    def codegen(context, builder, signature, args):
        address = _address(context, builder, signature.args[0], args[0], args[1])
        count = context.cast(builder, args[3], signature.args[3], types.intp)
        _masked(builder, "store", args[2].type, args[2],
                builder.bitcast(address, args[2].type.as_pointer()),
                ir.Constant(ir.IntType(32), value.dtype.bitwidth // 8),
                _lanes_below(builder, value.lanes, count))
        return context.get_dummy_value()

    return types.none(array, index, value, count), codegen


@intrinsic
def zeros(typingctx, like):
    """A vector of zeros, of the dtype of the array ``like``."""
    vector = _vector_of(like, "zeros")

    def codegen(context, builder, signature, args):
        return ir.Constant(context.get_value_type(signature.return_type), None)

    return vector(like), codegen


@intrinsic
def splat(typingctx, like, scalar):
    """A vector of ``scalar`` in every lane, of the dtype of the array ``like``."""
    vector = _vector_of(like, "splat")
    if not isinstance(scalar, types.Float):
        raise TypingError(f"simd.splat: needs a float scalar, got {scalar}")

    def codegen(context, builder, signature, args):
        element = context.cast(builder, args[1], scalar, vector.dtype)
        return _broadcast(builder, element, context.get_value_type(vector))

    return vector(like, scalar), codegen


@intrinsic
def add(typingctx, a, b):
    """``a + b``, lane by lane."""
    if not isinstance(a, Vector) or a != b:
        raise TypingError(f"simd.add: needs two vectors of one type, got ({a}, {b})")

    def codegen(context, builder, signature, args):
        return builder.fadd(args[0], args[1])

    return a(a, b), codegen


@intrinsic
def mul(typingctx, a, b):
    """``a * b``, lane by lane (rounded: never fused into a later add)."""
    if not isinstance(a, Vector) or a != b:
        raise TypingError(f"simd.mul: needs two vectors of one type, got ({a}, {b})")

    def codegen(context, builder, signature, args):
        return builder.fmul(args[0], args[1])

    return a(a, b), codegen


def _interleaved(builder, vectors, width, first, end):
    """Elements ``first .. end`` of the vectors of ``width`` lanes (a list)
    interleaved, lane ``j`` of vector ``r`` at ``j * len(vectors) + r``, as
    one vector: concatenated pairwise (padded to a power of two), then one
    shuffle."""
    count = len(vectors)
    parts = list(vectors)
    while len(parts) > 1:
        if len(parts) % 2:
            parts.append(ir.Constant(parts[0].type, ir.Undefined))
        parts = [builder.shuffle_vector(
            parts[i], parts[i + 1],
            ir.Constant(ir.VectorType(ir.IntType(32), 2 * parts[i].type.count),
                        list(range(2 * parts[i].type.count))))
            for i in range(0, len(parts), 2)]
    whole = parts[0]
    return builder.shuffle_vector(
        whole, ir.Constant(whole.type, ir.Undefined),
        ir.Constant(ir.VectorType(ir.IntType(32), end - first),
                    [(f % count) * width + f // count for f in range(first, end)]))


def _zipped(builder, vectors):
    """The vectors (a power of two of them) interleaved as
    :func:`_interleaved` does, as a list of whole vectors: log2(n) stages
    that each zip the vectors ``n / 2`` apart (``n log2 n`` two-source
    shuffles). LLVM lowered the single wide shuffle of 16 vectors into many
    more."""
    width = vectors[0].type.count
    mask_type = ir.VectorType(ir.IntType(32), width)
    zips = [ir.Constant(mask_type, [half + j // 2 + j % 2 * width for j in range(width)])
            for half in (0, width // 2)]
    half = len(vectors) // 2
    for _ in range(half.bit_length()):
        vectors = [builder.shuffle_vector(vectors[i], vectors[i + half], mask)
                   for i in range(half) for mask in zips]
    return vectors


@intrinsic
def store_interleaved(typingctx, array, index, vectors):
    """``array[index + j * n + r] = vectors[r][j]`` for the ``n`` vectors of
    the tuple ``vectors`` and every lane ``j``: ``n * lanes`` elements."""
    vector = _vector_of(array, "store_interleaved")
    if not (isinstance(vectors, types.UniTuple) and vectors.dtype == vector):
        raise TypingError(f"simd.store_interleaved: needs a tuple of {vector}, got {vectors}")
    count, width = vectors.count, vector.lanes

    def codegen(context, builder, signature, args):
        interleaved = _interleaved(builder, cgutils.unpack_tuple(builder, args[2]), width, 0,
                                   count * width)
        address = _address(context, builder, signature.args[0], args[0], args[1])
        pointer = builder.bitcast(address, interleaved.type.as_pointer())
        builder.store(interleaved, pointer, align=vector.dtype.bitwidth // 8)
        return context.get_dummy_value()

    return types.none(array, index, vectors), codegen


def _store_first(context, builder, array_type, array, index, outputs, count):
    """The vectors ``outputs`` stored one after another from ``array[index]``
    as far as its first ``count`` elements (intp values): whole vectors
    plainly, the one that ``count`` ends inside in a masked store, nothing
    past it."""
    vector_type = outputs[0].type
    width = vector_type.count
    align = 4 if vector_type.element == ir.FloatType() else 8
    for k, output in enumerate(outputs):
        first = ir.Constant(count.type, k * width)
        pointer = builder.bitcast(_address(context, builder, array_type, array,
                                           builder.add(index, first)), vector_type.as_pointer())
        whole = builder.icmp_signed(">=", count, ir.Constant(count.type, (k + 1) * width))
        with builder.if_else(whole, likely=True) as (then, otherwise):
            with then:
                builder.store(output, pointer, align=align)
            with otherwise:
                with builder.if_then(builder.icmp_signed("<", first, count)):
                    _masked(builder, "store", vector_type, output, pointer,
                            ir.Constant(ir.IntType(32), align),
                            _lanes_below(builder, width, builder.sub(count, first)))


@intrinsic
def store_interleaved_first(typingctx, array, index, vectors, count):
    """The first ``count`` elements (1 to ``n * lanes``) that
    :func:`store_interleaved` would store (the last vector in a masked
    store): nothing past them is written (a row's last outputs, where the row ends inside a
    vector)."""
    vector = _vector_of(array, "store_interleaved_first")
    if not (isinstance(vectors, types.UniTuple) and vectors.dtype == vector):
        raise TypingError(f"simd.store_interleaved_first: needs a tuple of {vector}, "
                          f"got {vectors}")
    n, width = vectors.count, vector.lanes

    def codegen(context, builder, signature, args):
        vectors = cgutils.unpack_tuple(builder, args[2])
        outputs = [_interleaved(builder, vectors, width, k * width, (k + 1) * width)
                   for k in range(n)]
        _store_first(context, builder, signature.args[0], args[0],
                     context.cast(builder, args[1], signature.args[1], types.intp), outputs,
                     context.cast(builder, args[3], signature.args[3], types.intp))
        return context.get_dummy_value()

    return types.none(array, index, vectors, count), codegen


def _vector_with_table(what, src, dst, addend, table_name, table):
    """The vector type of ``src``, ``dst`` and ``addend`` (one and the same,
    else a typing error), and ``table`` an int64 array, for intrinsic
    ``what``."""
    vector = _vector_of(src, what)
    if vector != _vector_of(dst, what) or vector != _vector_of(addend, what):
        raise TypingError(f"simd.{what}: {src}, {dst} and {addend} differ")
    if not (isinstance(table, types.Array) and table.dtype == types.int64):
        raise TypingError(f"simd.{what}: {table_name} must be int64, got {table}")
    return vector


@intrinsic
def interleave_rows_add(typingctx, src, src_at, rows_at, addend, dst, dst_at, n_rows, length):
    """The ``n_rows`` vectors ``src[src_at + rows_at[k] :][:lanes]`` (2 to
    ``lanes`` of them; ``rows_at`` int64), each plus the scalar
    ``addend[k]`` (one rounding), interleaved into ``dst[dst_at:]`` as
    :func:`store_interleaved` would, as far as its first ``length``
    elements (1 to ``n_rows * lanes``: nothing past them is written). The
    row count is a run-time value: one shuffle network is compiled for
    each, behind a switch."""
    vector = _vector_with_table("interleave_rows_add", src, dst, addend, "rows_at", rows_at)
    width = vector.lanes
    index_type = ir.IntType(64)

    def codegen(context, builder, signature, args):
        src_at, dst_at, n_rows, length = (
            context.cast(builder, args[k], signature.args[k], types.intp) for k in (1, 5, 6, 7))
        vector_type = context.get_value_type(vector)
        align = vector.dtype.bitwidth // 8

        def data(k):
            return context.make_array(signature.args[k])(context, builder, args[k]).data

        def pointer(k, index):
            return builder.bitcast(_address(context, builder, signature.args[k], args[k], index),
                                   vector_type.as_pointer())

        offsets, addends = data(2), data(3)
        done = builder.append_basic_block("interleave_rows.done")
        switch = builder.switch(n_rows, done)
        for count in range(2, width + 1):
            case = builder.append_basic_block(f"interleave_rows.{count}")
            switch.add_case(ir.Constant(n_rows.type, count), case)
            builder.position_at_end(case)
            rows = [builder.fadd(
                builder.load(pointer(0, builder.add(src_at, builder.load(
                    builder.gep(offsets, [ir.Constant(index_type, k)])))), align=align),
                _broadcast(builder, builder.load(builder.gep(addends, [ir.Constant(
                    index_type, k)])), vector_type)) for k in range(count)]
            outputs = (_zipped(builder, rows) if count & (count - 1) == 0 else
                       [_interleaved(builder, rows, width, k * width, (k + 1) * width)
                        for k in range(count)])
            _store_first(context, builder, signature.args[4], args[4], dst_at, outputs, length)
            builder.branch(done)
        builder.position_at_end(done)
        return context.get_dummy_value()

    return types.none(src, src_at, rows_at, addend, dst, dst_at, n_rows, length), codegen


@intrinsic
def load_ways(typingctx, array, index, ways):
    """``ways`` (an int literal) vectors: lane ``j`` of vector ``c`` is
    ``array[index + ways*j + c]`` (complex parts; channels at a position),
    in one wide load whose shuffles LLVM lays out."""
    vector = _vector_of(array, "load_ways")
    if not isinstance(ways, types.IntegerLiteral):
        return None  # (typed again with the literal)
    count, width = ways.literal_value, vector.lanes

    def codegen(context, builder, signature, args):
        address = _address(context, builder, signature.args[0], args[0], args[1])
        wide = ir.VectorType(context.get_value_type(vector).element, count * width)
        stretch = builder.load(builder.bitcast(address, wide.as_pointer()),
                               align=vector.dtype.bitwidth // 8)
        parts = [builder.shuffle_vector(
            stretch, ir.Constant(wide, ir.Undefined),
            ir.Constant(ir.VectorType(ir.IntType(32), width), list(range(c, count * width, count))))
            for c in range(count)]
        return context.make_tuple(builder, signature.return_type, parts)

    return types.UniTuple(vector, count)(array, index, ways), codegen


def _broadcast(builder, element, vector_type):
    """``element`` in every lane of a vector of ``vector_type``."""
    single = builder.insert_element(ir.Constant(vector_type, ir.Undefined), element,
                                    ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(
        single, ir.Constant(vector_type, ir.Undefined),
        ir.Constant(ir.VectorType(ir.IntType(32), vector_type.count), [0] * vector_type.count))


@intrinsic
def fma(typingctx, vector, scalar, addend):
    """``vector * scalar + addend`` with one rounding (``scalar`` a float,
    broadcast, or a vector multiplied lane by lane; or all three floats of
    one type, for scalar code that must round as the tiles do)."""
    all_scalars = isinstance(vector, types.Float) and scalar == vector == addend
    if not all_scalars and (not isinstance(vector, Vector) or addend != vector or not (
            isinstance(scalar, types.Float) or scalar == vector)):
        raise TypingError(f"simd.fma: needs (vector, float or vector, vector), got "
                          f"({vector}, {scalar}, {addend})")

    def codegen(context, builder, signature, args):
        vector_type = args[0].type
        if all_scalars:
            name = f"llvm.fma.{vector_type.intrinsic_name}"
            intrinsic_fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vector_type, [vector_type] * 3), name)
            return builder.call(intrinsic_fn, list(args))
        if scalar == vector:
            spread = args[1]
        else:
            element = context.cast(builder, args[1], signature.args[1], vector.dtype)
            spread = _broadcast(builder, element, vector_type)
        name = f"llvm.fma.v{vector_type.count}{vector_type.element.intrinsic_name}"
        intrinsic_fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vector_type, [vector_type] * 3), name)
        return builder.call(intrinsic_fn, [args[0], spread, args[2]])

    return vector(vector, scalar, addend), codegen


@intrinsic
def sum_lanes(typingctx, vector):
    """The sum of the lanes of ``vector``, as a tree of halves (a fixed
    order, so the same on every call)."""
    if not isinstance(vector, Vector):
        raise TypingError(f"simd.sum_lanes: needs a vector, got {vector}")

    def codegen(context, builder, signature, args):
        value, count = args[0], vector.lanes
        while count > 1:
            count //= 2
            halves = [builder.shuffle_vector(
                value, ir.Constant(value.type, ir.Undefined),
                ir.Constant(ir.VectorType(ir.IntType(32), count), list(range(at, at + count))))
                for at in (0, count)]
            value = builder.fadd(*halves)
        return builder.extract_element(value, ir.Constant(ir.IntType(32), 0))

    return vector.dtype(vector), codegen


def _transposed(builder, rows):
    """The ``n`` vectors ``rows`` (``n`` lanes each, ``n`` a power of two)
    transposed: lane ``c`` of result ``r`` is lane ``r`` of ``rows[c]``. In
    log2(n) stages, each swapping the off-diagonal blocks of ``half`` lanes
    between rows ``half`` apart: ``n log2 n`` two-source shuffles (one
    ``vpermt2ps``/``vpermt2pd`` each on AVX-512)."""
    n = len(rows)
    rows = list(rows)
    mask_type = ir.VectorType(ir.IntType(32), n)
    half = n // 2
    while half:
        upper = [(lane if lane // half % 2 == 0 else n + lane - half) for lane in range(n)]
        lower = [(lane + half if lane // half % 2 == 0 else n + lane) for lane in range(n)]
        for i in range(n):
            if i // half % 2 == 0:
                a, b = rows[i], rows[i + half]
                rows[i] = builder.shuffle_vector(a, b, ir.Constant(mask_type, upper))
                rows[i + half] = builder.shuffle_vector(a, b, ir.Constant(mask_type, lower))
        half //= 2
    return rows


def _transpose_codegen(with_addend, streaming=False):
    def codegen(context, builder, signature, args):
        src, src_at, src_step, dst, dst_at, dst_step = args[:6]
        index_types = [signature.args[k] for k in (1, 2, 4, 5)]
        src_at, src_step, dst_at, dst_step = (
            context.cast(builder, value, kind, types.intp)
            for value, kind in zip((src_at, src_step, dst_at, dst_step), index_types))
        vector_type = context.get_value_type(Vector(signature.args[0].dtype))
        n = vector_type.count
        align = signature.args[0].dtype.bitwidth // 8

        def address(array_type, array, at, step, k):
            index = builder.add(at, builder.mul(step, ir.Constant(at.type, k)))
            return builder.bitcast(_address(context, builder, array_type, array, index),
                                   vector_type.as_pointer())

        rows = [builder.load(address(signature.args[0], src, src_at, src_step, r), align=align)
                for r in range(n)]
        columns = _transposed(builder, rows)
        if with_addend:
            at = context.cast(builder, args[7], signature.args[7], types.intp)
            addend = builder.load(builder.bitcast(
                _address(context, builder, signature.args[6], args[6], at),
                vector_type.as_pointer()), align=align)
            columns = [builder.fadd(column, addend) for column in columns]
        for c, column in enumerate(columns):
            stored = builder.store(column, address(signature.args[3], dst, dst_at, dst_step, c),
                                   align=VECTOR_BYTES if streaming else align)
            if streaming:  # no read for ownership
                stored.set_metadata("nontemporal", builder.module.add_metadata(
                    [ir.Constant(ir.IntType(32), 1)]))
        return context.get_dummy_value()
    return codegen


@intrinsic
def transpose_tile(typingctx, src, src_at, src_step, dst, dst_at, dst_step):
    """A square tile of ``lanes`` x ``lanes`` elements transposed: row ``r``
    ``src[src_at + r*src_step :][:lanes]`` becomes column ``r`` of the rows
    ``dst[dst_at + c*dst_step :][:lanes]``, in vector shuffles."""
    if _vector_of(src, "transpose_tile") != _vector_of(dst, "transpose_tile"):
        raise TypingError(f"simd.transpose_tile: {src} and {dst} differ")
    return types.none(src, src_at, src_step, dst, dst_at, dst_step), _transpose_codegen(False)


@intrinsic
def transpose_tile_add(typingctx, src, src_at, src_step, dst, dst_at, dst_step, addend,
                       addend_at):
    """:func:`transpose_tile` with the vector ``addend[addend_at:][:lanes]``
    added to every row of ``dst`` (one rounding per element)."""
    vector = _vector_of(src, "transpose_tile_add")
    if vector != _vector_of(dst, "transpose_tile_add") or vector != _vector_of(
            addend, "transpose_tile_add"):
        raise TypingError(f"simd.transpose_tile_add: {src}, {dst} and {addend} differ")
    return (types.none(src, src_at, src_step, dst, dst_at, dst_step, addend, addend_at),
            _transpose_codegen(True))


def _masked(builder, operation, vector_type, *operands):
    """A call of LLVM's ``llvm.masked.load``/``llvm.masked.store`` for
    ``vector_type`` (AVX-512 and AVX have them in one instruction; LLVM
    splits them elsewhere): only the lanes whose mask bit is set touch
    memory, so a partial vector may end where its array does."""
    element = "f32" if vector_type.element == ir.FloatType() else "f64"
    name = f"llvm.masked.{operation}.v{vector_type.count}{element}.p0"
    function = builder.module.globals.get(name)
    if function is None:
        pointer, alignment, mask = ir.PointerType(vector_type), ir.IntType(32), ir.VectorType(
            ir.IntType(1), vector_type.count)
        signature = (ir.FunctionType(vector_type, [pointer, alignment, mask, vector_type])
                     if operation == "load" else
                     ir.FunctionType(ir.VoidType(), [vector_type, pointer, alignment, mask]))
        function = ir.Function(builder.module, signature, name=name)
    return builder.call(function, operands)


def _lanes_below(builder, n, bound):
    """The ``n``-lane mask of the lanes below ``bound`` (an intp)."""
    index = ir.IntType(64)
    count = builder.sext(bound, index) if bound.type.width < 64 else bound
    splat = builder.insert_element(ir.Constant(ir.VectorType(index, n), ir.Undefined), count,
                                   ir.Constant(ir.IntType(32), 0))
    splat = builder.shuffle_vector(splat, splat,
                                   ir.Constant(ir.VectorType(ir.IntType(32), n), [0] * n))
    return builder.icmp_signed("<", ir.Constant(ir.VectorType(index, n), list(range(n))), splat)


def _transpose_part_codegen(with_addend, dst_table=False):
    """Codegen of the part transposes: ``(src, src_at, src_step, dst,
    dst_at, dst_step, [addend, addend_at,] rows, cols)``; with
    ``dst_table``, ``(src, src_at, src_step, dst, dst_at, table, table_at,
    addend, addend_at, rows, cols)``: column ``c`` goes to ``dst[dst_at +
    table[table_at + c]]``, nowhere where that entry is negative."""
    def codegen(context, builder, signature, args):
        intp = types.intp
        first = 7 if dst_table else 6  # the addend's argument
        src, dst = args[0], args[3]
        src_at, src_step, dst_at, dst_step, rows, cols = (
            context.cast(builder, args[k], signature.args[k], intp)
            for k in (1, 2, 4, first - 1, len(args) - 2, len(args) - 1))
        vector_type = context.get_value_type(Vector(signature.args[0].dtype))
        n = vector_type.count
        align = ir.Constant(ir.IntType(32), signature.args[0].dtype.bitwidth // 8)
        zero = ir.Constant(vector_type, [0.0] * n)

        def address(array_type, array, at, step, k):
            index = builder.add(at, builder.mul(step, ir.Constant(at.type, k)))
            return builder.bitcast(_address(context, builder, array_type, array, index),
                                   vector_type.as_pointer())

        def below(value, k):
            return builder.icmp_signed("<", ir.Constant(value.type, k), value)

        # Rows past ``rows`` load the last one again (their lanes are never
        # stored): a masked load whose lanes are all off but whose address
        # lies past the mapped memory took a fault-suppressing microcode
        # assist (the last phase's rows past a block of few channels: 2.2
        # times the call on a heap that ended there).
        in_cols = _lanes_below(builder, n, cols)
        last_row = builder.sub(rows, ir.Constant(rows.type, 1))
        loaded = [_masked(builder, "load", vector_type, builder.bitcast(_address(
            context, builder, signature.args[0], src,
            builder.add(src_at, builder.mul(src_step, builder.select(
                below(rows, r), ir.Constant(rows.type, r), last_row)))),
            vector_type.as_pointer()), align, in_cols, zero) for r in range(n)]
        columns = _transposed(builder, loaded)
        if with_addend:
            at = context.cast(builder, args[first + 1], signature.args[first + 1], intp)
            addend = _masked(builder, "load", vector_type, builder.bitcast(
                _address(context, builder, signature.args[first], args[first], at),
                vector_type.as_pointer()), align, _lanes_below(builder, n, rows), zero)
            columns = [builder.fadd(column, addend) for column in columns]
        in_rows = _lanes_below(builder, n, rows)
        for c, column in enumerate(columns):
            with builder.if_then(below(cols, c), likely=True):  # (no store past them)
                if not dst_table:
                    _masked(builder, "store", vector_type, column,
                            address(signature.args[3], dst, dst_at, dst_step, c), align, in_rows)
                    continue
                table = context.make_array(signature.args[5])(context, builder, args[5]).data
                at = builder.load(builder.gep(table, [builder.add(
                    dst_step, ir.Constant(dst_step.type, c))]))
                with builder.if_then(builder.icmp_signed(">=", at, ir.Constant(at.type, 0))):
                    _masked(builder, "store", vector_type, column,
                            address(signature.args[3], dst, dst_at, at, 1), align, in_rows)
        return context.get_dummy_value()
    return codegen


@intrinsic
def transpose_tile_part(typingctx, src, src_at, src_step, dst, dst_at, dst_step, rows, cols):
    """:func:`transpose_tile` of the first ``rows`` x ``cols`` elements of
    the square (each 1 to ``lanes``): row ``r < rows``'s first ``cols``
    elements become column ``r`` of the rows ``c < cols`` of ``dst``; no
    element outside that part is read or written (masked loads and
    stores). The ragged edges of a transpose, and squares of fewer
    channels than a vector, in vectors instead of element by element."""
    if _vector_of(src, "transpose_tile_part") != _vector_of(dst, "transpose_tile_part"):
        raise TypingError(f"simd.transpose_tile_part: {src} and {dst} differ")
    return (types.none(src, src_at, src_step, dst, dst_at, dst_step, rows, cols),
            _transpose_part_codegen(False))


@intrinsic
def transpose_tile_part_add(typingctx, src, src_at, src_step, dst, dst_at, dst_step, addend,
                            addend_at, rows, cols):
    """:func:`transpose_tile_part` with ``addend[addend_at:][:rows]`` added
    to every row of ``dst`` written (one rounding per element)."""
    vector = _vector_of(src, "transpose_tile_part_add")
    if vector != _vector_of(dst, "transpose_tile_part_add") or vector != _vector_of(
            addend, "transpose_tile_part_add"):
        raise TypingError(f"simd.transpose_tile_part_add: {src}, {dst} and {addend} differ")
    return (types.none(src, src_at, src_step, dst, dst_at, dst_step, addend, addend_at, rows,
                       cols), _transpose_part_codegen(True))


@intrinsic
def transpose_tile_scatter_add(typingctx, src, src_at, src_step, dst, dst_at, table, table_at,
                               addend, addend_at, rows, cols):
    """:func:`transpose_tile_part_add` whose columns go anywhere: column
    ``c < cols`` (its first ``rows`` lanes) to ``dst[dst_at +
    table[table_at + c] :]``, nowhere where that entry is negative
    (``table`` int64). Outputs that lie apart in a vector of sums -- short
    rows with gaps between them -- scattered in one transpose."""
    _vector_with_table("transpose_tile_scatter_add", src, dst, addend, "table", table)
    return (types.none(src, src_at, src_step, dst, dst_at, table, table_at, addend, addend_at,
                       rows, cols), _transpose_part_codegen(True, dst_table=True))


@intrinsic
def transpose_tile_add_streaming(typingctx, src, src_at, src_step, dst, dst_at, dst_step,
                                 addend, addend_at):
    """:func:`transpose_tile_add` with non-temporal stores: each row of
    ``dst`` must be a whole vector-aligned cache line. They go to memory
    without first reading the line into the cache, and they are weakly
    ordered: a kernel that makes them ends with :func:`store_fence`."""
    vector = _vector_of(src, "transpose_tile_add_streaming")
    if vector != _vector_of(dst, "transpose_tile_add_streaming") or vector != _vector_of(
            addend, "transpose_tile_add_streaming"):
        raise TypingError(f"simd.transpose_tile_add_streaming: {src}, {dst} and {addend} differ")
    return (types.none(src, src_at, src_step, dst, dst_at, dst_step, addend, addend_at),
            _transpose_codegen(True, streaming=True))


@intrinsic
def prefetch(typingctx, array, index):
    """A hint to bring the cache line of ``array[index]`` into the caches
    before it is loaded; ``index`` may lie past the array (a prefetch
    never faults)."""
    _vector_of(array, "prefetch")

    def codegen(context, builder, signature, args):
        address = _address(context, builder, signature.args[0], args[0], args[1])
        byte_pointer, word = ir.IntType(8).as_pointer(), ir.IntType(32)
        hint = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [byte_pointer, word, word, word]),
            "llvm.prefetch.p0i8")
        # A read (0), kept in every cache level (3), of data (1).
        builder.call(hint, [builder.bitcast(address, byte_pointer), word(0), word(3), word(1)])
        return context.get_dummy_value()

    return types.none(array, index), codegen


@intrinsic
def store_fence(typingctx):
    """A full memory fence: non-temporal stores made before it are visible
    to every thread before any memory operation after it."""
    def codegen(context, builder, signature, args):
        builder.fence("seq_cst")
        return context.get_dummy_value()

    return types.none(), codegen


@njit(inline="always")
def lanes_before_boundary(array):
    """How many elements ``array``'s data starts past a vector boundary."""
    return (np.int64(array.ctypes.data) // array.itemsize) % lanes(array)


@njit(inline="always")
def window_pitch(length, lanes, itemsize):
    """Elements from one row of a window to the next, for rows of
    ``length`` elements of ``itemsize`` bytes: whole vectors of ``lanes``,
    and one cache line more where that would make an even number of lines.
    Rows 2**k lines apart use 1/2**k of L1's sets (rows of 1024 float32, 4
    KiB apart, all fall in one set of 8 ways); an odd number of lines
    spreads them over all. A tile reading a vector from each of 128 rows 4
    KiB apart found almost none in L1: 7 % of a 128 -> 64 channel call with
    a 2x2 kernel (unet_2d)."""
    pitch = -(-length // lanes) * lanes
    if pitch * itemsize % (2 * LINE_BYTES) == 0:
        pitch += LINE_BYTES // itemsize
    return pitch


@njit(inline="always")
def aligned(room, size):
    """``room[lead : lead + size]``, where ``lead < lanes`` puts element 0 on
    a vector boundary (``room`` has ``lanes - 1`` elements to spare): vector
    loads at multiples of ``lanes`` then touch one cache line, not two
    (Numba's arrays start 32 bytes off a 64-byte line as often as not)."""
    lead = -lanes_before_boundary(room) % lanes(room)
    return room[lead:lead + size]
