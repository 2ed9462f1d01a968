"""cosmo-runner: JSON-specified validator and meta-analysis pipelines in a locked environment."""

from cosmo_runner._version import __version__

__all__ = ["__version__"]
