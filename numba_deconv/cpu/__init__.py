"""CPU backend: Numba kernels (``kernels``, ``tiled``, ``columns``, ...),
their work split (``work_split``) and their host driver (``driver``)."""
