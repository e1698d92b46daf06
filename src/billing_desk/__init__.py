"""billing-desk: back-office billing for a facility transportation service."""

from importlib.metadata import PackageNotFoundError, version

try:
    # One version, pyproject.toml's, as the installed package's metadata gives it.
    __version__ = version("billing-desk")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0.0.0+unknown"
