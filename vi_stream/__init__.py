"""vi_stream: visual-inspection anomaly detection for ATLAS ITk pixel modules."""
from ._version import __version__

__all__ = ["__version__"]
