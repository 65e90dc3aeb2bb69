"""sigfs: a Linux process's signal and execution state as files."""

__version__ = "0.1.0"
