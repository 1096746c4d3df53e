"""The package version, in one place (the cache stamp reads it too)."""

__version__ = "0.1.0"
