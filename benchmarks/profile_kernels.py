"""Where a call's time goes, kernel by kernel, with Linux ``perf``. Not part
of the test suite or the asv suite (no ``time_`` names; nothing runs on
import).

    perf record -o call.data python benchmarks/profile_kernels.py r30 --spread-seed 0 \\
        --layout channels_last --seconds 5
    perf report -i call.data --no-children --sort symbol

``perf`` cannot name Numba's machine code: it lies in memory that no file
backs. This script loads a case's kernels (``CASE`` names a case of the
standard table, of ``--case-file``, or with ``--spread-seed`` of that
random spread, by its name or the part before the first ``_``), then
writes ``/tmp/perf-PID.map``, where ``perf report`` looks such addresses
up, and calls the case in a loop. Each function gets its own line, the
callees that a kernel keeps out of line included (the phase tiles'
products, the channels-last scatter, the transposes): their symbols are
read with ``nm`` (GNU binutils) from the object code that Numba's
on-disk cache loads, and looked up in Numba's JIT. That relies on
Numba's internals (``CPUCodeLibrary._unserialize``, the code library's
``_codegen._engine``), which may change between releases; kernels that
this process compiles rather than loads are named from their LLVM
modules, their out-of-line callees not separately (run it twice: the
second run loads them from the cache).

An example, seed 0's r30 (1-D, 10 -> 40 channels in 5 groups on 4 images
of 7739, float32) on the Intel Xeon of 2026-12-07: channels first the
phase tiles' interleave 33 % and products 25 % of 271 us; channels last
the transposing scatter 44 % and products 22 % of 319 us.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time

_LOADED = []  # the code libraries loaded from Numba's cache, with their object code


def _keep_loaded_objects() -> None:
    """Have Numba's cache loader keep each library's object code (it hands
    it to the JIT and drops it)."""
    from numba.core import codegen

    unserialize = codegen.CPUCodeLibrary._unserialize.__func__

    def keeping(cls, codegen_, state):
        library = unserialize(cls, codegen_, state)
        _name, kind, data = state
        if kind == "object":
            _LOADED.append((library, data[0]))
        return library

    codegen.CPUCodeLibrary._unserialize = classmethod(keeping)


def _object_functions(library, object_code):
    """``(address, size, name)`` of each function in ``object_code`` (an ELF
    object) that ``library``'s JIT resolves."""
    with tempfile.NamedTemporaryFile(suffix=".o", delete=False) as f:
        f.write(object_code)
    try:
        listing = subprocess.run(["nm", "-S", "--defined-only", f.name], check=True,
                                 capture_output=True, text=True).stdout
    finally:
        os.unlink(f.name)
    engine = library._codegen._engine
    for line in listing.splitlines():
        fields = line.split()
        # Code symbols: local, global, or weak (Numba's linkonce_odr functions).
        if len(fields) == 4 and fields[2] in "tTwW":
            address = engine.get_function_address(fields[3])
            if address:
                yield address, int(fields[1], 16), fields[3]


def _compiled_functions():
    """``(address, size, name)`` of the functions this process compiled
    itself (no object code kept: a nominal size)."""
    import gc

    from numba.core.dispatcher import Dispatcher

    loaded = {id(library) for library, _ in _LOADED}
    for dispatcher in [o for o in gc.get_objects() if isinstance(o, Dispatcher)]:
        for result in dispatcher.overloads.values():
            library = result.library
            if id(library) in loaded:
                continue
            for function in library._final_module.functions:
                if not function.is_declaration:
                    address = library._codegen._engine.get_function_address(function.name)
                    if address:
                        yield address, 0x1000, function.name


def _readable(symbol: str) -> str:
    """``numba_deconv.cpu.tiled.direct_tiled`` for Numba's mangled
    ``_ZN12numba_deconv3cpu5tiled12direct_tiledB3v58...`` (its qualified
    name: the length-prefixed parts before the ABI tags)."""
    at = symbol.find("_ZN")
    if at < 0:
        return symbol
    parts, i = [], at + 3
    while i < len(symbol) and symbol[i].isdigit():
        j = i
        while symbol[j].isdigit():
            j += 1
        length = int(symbol[i:j])
        parts.append(symbol[j:j + length])
        i = j + length
    return symbol[:at] + ".".join(parts) if parts else symbol


def write_perf_map() -> str:
    """Write ``/tmp/perf-PID.map`` for every Numba function in this process;
    return its path."""
    functions = {}
    for library, object_code in _LOADED:
        for address, size, name in _object_functions(library, object_code):
            functions[address] = (size, name)
    for address, size, name in _compiled_functions():
        functions.setdefault(address, (size, name))
    path = f"/tmp/perf-{os.getpid()}.map"
    with open(path, "w") as f:
        for address in sorted(functions):
            size, name = functions[address]
            f.write(f"{address:x} {size:x} {_readable(name)}\n")
    return path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("case", help="a case name, or its part before the first '_'")
    parser.add_argument("--case-file", help="a case file (default: the standard table)")
    parser.add_argument("--spread-seed", type=int,
                        help="take the case from this seed's random spread of 64")
    parser.add_argument("--layout", choices=("channels_first", "channels_last"),
                        default="channels_first")
    parser.add_argument("--complex", action="store_true",
                        help="complex data of the same width (complex64 for float32)")
    parser.add_argument("--plan", action="store_true",
                        help="call through numba_deconv.plan (weights laid out once)")
    parser.add_argument("--op", choices=("conv_transpose", "conv"), default="conv_transpose",
                        help="conv: the adjoint direction, the case's output shape back")
    parser.add_argument("--seconds", type=float, default=5.0, help="how long to loop")
    args = parser.parse_args(argv)

    os.environ.setdefault("NUMBA_DECONV_BACKGROUND_COMPILE", "0")  # the tuned kernels, here
    _keep_loaded_objects()
    import numpy as np

    import numba_deconv
    from numba_deconv.bench.cases import Case, load_cases, make_inputs
    from numba_deconv.bench.spread import random_spread

    cases = ([Case.from_dict(d) for d in random_spread(64, args.spread_seed)]
             if args.spread_seed is not None else load_cases(args.case_file))
    found = [c for c in cases if args.case in (c.name, c.name.split("_")[0])]
    if not found:
        parser.error(f"no case {args.case!r}; there are {', '.join(c.name for c in cases)}")
    case = found[0]
    kwargs = case.kwargs(args.op)
    x, w = make_inputs(case, case.dtype, seed=0)
    if args.op == "conv":  # (bench --op conv's input: the case's output shape)
        x = np.random.default_rng(0).standard_normal(case.out_shape).astype(x.dtype)
    if args.complex:  # as bench --variants makes them
        wide = np.result_type(x.dtype, np.complex64)
        x, w = (x + 1j * np.roll(x, 1)).astype(wide), (w - 1j * np.roll(w, 1)).astype(wide)
    if args.layout == "channels_last":
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
        kwargs["data_format"] = "channels_last"
    if args.plan:
        if args.op == "conv":
            parser.error("--plan times conv_transpose (a plan's adjoint is conv)")
        call = numba_deconv.plan(w, x.shape, **kwargs)
    else:
        function = getattr(numba_deconv, args.op)

        def call(x):
            return function(x, w, **kwargs)
    for _ in range(5):  # load or compile every kernel the call runs
        call(x)
    print(f"{case.name} {x.dtype} {args.layout}: {write_perf_map()}", flush=True)
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < args.seconds:
        call(x)
        calls += 1
    print(f"{calls} calls, {(time.perf_counter() - start) / calls * 1e6:.1f} us each")


if __name__ == "__main__":
    main()
