"""Views of arrays inside compiled code, cheaper than Numba's own:
``flat``, a C-contiguous array as 1-D without the helper-library call that
``reshape`` makes (without its nine, the TF worked example's kernel took
0.80-0.95 instead of 1.14-2.01 us)."""

from numba import types
from numba.core.errors import TypingError
from numba.core.imputils import impl_ret_borrowed
from numba.extending import intrinsic


@intrinsic
def flat(typingctx, array):
    """``array.reshape(-1)`` of a C-contiguous array, without the call
    into Numba's helper library that every ``reshape`` makes to find
    whether it can share the data (which a C-contiguous type already
    says): the tiny calls' kernel made nine (:func:`.kernels.rows_tiny`)."""
    if not (isinstance(array, types.Array) and array.layout == "C"):
        raise TypingError(f"views.flat: needs a C-contiguous array, got {array}")
    result = array.copy(ndim=1)

    def codegen(context, builder, signature, args):
        # Imported here, not with the module: importing numba.np.arrayobj
        # registers NumPy functions that a NumPy without them (2.5 has no
        # row_stack) fails on, and this module is imported with the package.
        from numba.np.arrayobj import populate_array

        src = context.make_array(signature.args[0])(context, builder, args[0])
        dst = context.make_array(signature.return_type)(context, builder)
        itemsize = context.get_constant(types.intp, context.get_abi_sizeof(
            context.get_data_type(array.dtype)))
        populate_array(dst, data=src.data, shape=[src.nitems], strides=[itemsize],
                       itemsize=itemsize, meminfo=src.meminfo, parent=src.parent)
        return impl_ret_borrowed(context, builder, signature.return_type, dst._getvalue())

    return result(array), codegen
