"""The version of csoftmax: the single source, read by pyproject.toml (setuptools dynamic metadata)."""

__version__ = "0.1.0"
