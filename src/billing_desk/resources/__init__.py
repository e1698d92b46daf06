"""Files billing-desk reads at run time (fonts with their licences, the application icon),
shipped inside the package so that every installation has them: found through
importlib.resources, never through a path of the source tree."""

from __future__ import annotations

from importlib.resources import as_file, files
from pathlib import Path


def resource_path(*parts: str) -> Path:
    """A file of the package's resources as a path on disk (installed packages, wheels and
    frozen bundles alike keep them as plain files)."""
    resource = files(__name__).joinpath(*parts)
    with as_file(resource) as path:
        return Path(path)


def fonts_folder() -> Path:
    """The folder of the embedded fonts (reports and the window)."""
    return resource_path("fonts")
