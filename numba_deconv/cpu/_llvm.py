"""LLVM code-generation hints for the hot loops.

On AVX-512 CPUs LLVM's default tuning vectorises with 256-bit registers
(wide ones lowered the clock of early Skylake-SP parts), so loops that are
bound by multiply-adds run at half the machine's width. :func:`wide_vectors`
lifts that for the one function it is called in. Elsewhere (AVX2, ARM) the
hint is a no-op: LLVM never uses vectors wider than the CPU has.
"""

from numba import types
from numba.extending import intrinsic

# String attributes that llvmlite's FunctionAttributes does not know by
# name; AttributeSet is a set of the attribute texts, so they go in as is.
_WIDE = ('"prefer-vector-width"="512"', '"min-legal-vector-width"="512"')


@intrinsic
def wide_vectors(typingctx):
    """Let LLVM vectorise the calling function with 512-bit registers."""

    def codegen(context, builder, signature, args):
        for attribute in _WIDE:
            set.add(builder.function.attributes, attribute)
        return context.get_dummy_value()

    return types.none(), codegen
