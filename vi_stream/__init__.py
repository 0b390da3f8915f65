"""vi_stream: visual-inspection anomaly detection for ATLAS ITk pixel modules."""
from vi_stream._version import __version__

__all__ = ["__version__", "Client"]


def __getattr__(name: str):
    # Lazy: importing vi_stream must not import requests (or torch) as a side effect.
    if name == "Client":
        from vi_stream.client import Client
        return Client
    raise AttributeError(name)
