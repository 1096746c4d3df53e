"""CPU backend: Numba kernels (``kernels``) and their host driver (``driver``)."""
