"""CUDA backend (numba-cuda): ``backend`` (host side) and ``kernels``.

Importing this package does not import ``numba.cuda``; ``backend`` imports
it inside its functions and ``kernels`` only when a kernel is needed.
"""
