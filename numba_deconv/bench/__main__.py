"""``python -m numba_deconv.bench``: the bench without the package's CLI."""
if __name__ == "__main__":
    import sys

    from .cli import main
    sys.exit(main())
