"""Atomic operations for Numba kernels that several threads run at once.

:func:`claim` hands out the next task of a task kernel
(:func:`.launch.parallel`), :func:`cancelled` polls the flag that Ctrl-C
sets, and :func:`fetch_add`, :func:`read` and :func:`write` keep the
thread pool's job counters (:mod:`.launch`): LLVM atomics on the first
element of an int64 (or, for the flag, uint8) array that the threads share,
which the optimiser can neither hoist out of a loop nor tear.
"""

from llvmlite import ir
from numba import types
from numba.core.errors import TypingError
from numba.extending import intrinsic


@intrinsic
def cancelled(typingctx, flag):
    """Whether ``flag[0]`` (a uint8 array another thread may set) is
    nonzero, read from memory every time: an atomic load, which the
    optimiser cannot hoist out of the loop that polls it."""
    if not (isinstance(flag, types.Array) and flag.dtype == types.uint8):
        raise TypingError(f"atomics.cancelled: needs a uint8 array, got {flag}")

    def codegen(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, args[0])
        value = builder.load_atomic(array.data, "monotonic", 1)
        return builder.icmp_unsigned("!=", value, ir.Constant(value.type, 0))

    return types.boolean(flag), codegen


def _check_counter(what, counter, operand=None):
    """Refuse at typing time anything but an int64 array (and, where the
    operation takes one, an integer ``operand``)."""
    if not (isinstance(counter, types.Array) and counter.dtype == types.int64) or (
            operand is not None and not isinstance(operand, types.Integer)):
        wanted = "an int64 array" + ("" if operand is None else " and an integer")
        got = counter if operand is None else (counter, operand)
        raise TypingError(f"atomics.{what}: needs {wanted}, got {got}")


@intrinsic
def claim(typingctx, counter):
    """The next task of a kernel that several threads run at once:
    ``counter[0]`` (an int64 array they share), incremented atomically, so
    each task goes to exactly one thread and a thread that finishes early
    takes the next one."""
    _check_counter("claim", counter)

    def codegen(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, args[0])
        return builder.atomic_rmw("add", array.data, ir.Constant(ir.IntType(64), 1),
                                  "monotonic")

    return types.int64(counter), codegen


@intrinsic
def fetch_add(typingctx, counter, delta):
    """``counter[0] += delta`` atomically (an int64 array that threads
    share), ordered with every other atomic operation; the value before."""
    _check_counter("fetch_add", counter, delta)

    def codegen(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, args[0])
        step = context.cast(builder, args[1], signature.args[1], types.int64)
        return builder.atomic_rmw("add", array.data, step, "seq_cst")

    return types.int64(counter, delta), codegen


@intrinsic
def read(typingctx, counter):
    """``counter[0]`` (an int64 array another thread may change), read from
    memory every time: an atomic load, which the optimiser cannot hoist
    out of the loop that polls it."""
    _check_counter("read", counter)

    def codegen(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, args[0])
        return builder.load_atomic(array.data, "seq_cst", 8)

    return types.int64(counter), codegen


@intrinsic
def write(typingctx, counter, value):
    """``counter[0] = value`` (an int64 array other threads read with
    :func:`read`), an atomic store ordered with every atomic operation."""
    _check_counter("write", counter, value)

    def codegen(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, args[0])
        stored = context.cast(builder, args[1], signature.args[1], types.int64)
        builder.store_atomic(stored, array.data, "seq_cst", 8)
        return context.get_dummy_value()

    return types.none(counter, value), codegen
