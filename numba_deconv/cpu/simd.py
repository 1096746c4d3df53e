"""SIMD vectors for Numba kernels: just enough for a register-tiled product.

Numba has no vector type, and LLVM keeps a tile's accumulators in
registers only when they are plain SSA values: written as array elements
they live in L1 and every multiply-add costs a load and a store (the
previous 4x4 tiles topped out at 60-90 GFLOP/s per core here). A
:class:`Vector` is an LLVM ``<lanes x float>`` value, so a tile of them
stays in registers for a whole reduction, and each multiply-add compiles to
one ``vfmadd`` with a broadcast weight.

A vector is :data:`VECTOR_BYTES` wide: one AVX-512 register. On CPUs with
narrower registers LLVM splits each vector into two or four, which is still
correct (a tile of 16 then needs more registers than AVX2 has, and spills).

Only what the tiled kernel needs: :func:`load`, :func:`store`,
:func:`zeros` and :func:`fma` (vector times a broadcast scalar plus vector),
for float32 and float64 1-D arrays. Loads and stores are unaligned and
unchecked, like ``boundscheck=False`` indexing: the caller keeps every lane
inside the array.
"""

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.extending import intrinsic, models, register_model

#: Bytes per vector: one AVX-512 register (16 float32, 8 float64).
VECTOR_BYTES = 64


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
def zeros(typingctx, like):
    """A vector of zeros, of the dtype of the array ``like``."""
    vector = _vector_of(like, "zeros")

    def codegen(context, builder, signature, args):
        return ir.Constant(context.get_value_type(signature.return_type), None)

    return vector(like), codegen


@intrinsic
def fma(typingctx, vector, scalar, addend):
    """``vector * scalar + addend`` with one rounding (``scalar`` broadcast)."""
    if not isinstance(vector, Vector) or addend != vector or not isinstance(
            scalar, types.Float):
        raise TypingError(f"simd.fma: needs (vector, float, vector), got "
                          f"({vector}, {scalar}, {addend})")

    def codegen(context, builder, signature, args):
        vector_type = args[0].type
        element = context.cast(builder, args[1], signature.args[1], vector.dtype)
        single = builder.insert_element(ir.Constant(vector_type, ir.Undefined), element,
                                        ir.Constant(ir.IntType(32), 0))
        spread = builder.shuffle_vector(
            single, ir.Constant(vector_type, ir.Undefined),
            ir.Constant(ir.VectorType(ir.IntType(32), vector_type.count),
                        [0] * vector_type.count))
        name = f"llvm.fma.v{vector_type.count}{vector_type.element.intrinsic_name}"
        intrinsic_fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vector_type, [vector_type] * 3), name)
        return builder.call(intrinsic_fn, [args[0], spread, args[2]])

    return vector(vector, scalar, addend), codegen
