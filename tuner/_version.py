"""The package's version, in one place: `tuner.__version__` reads it, and so does setup.cfg
(`version = attr: tuner._version.__version__`, read without importing the package)."""

__version__ = "0.1.0"
