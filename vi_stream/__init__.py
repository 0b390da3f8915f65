"""vi_stream: visual-inspection anomaly detection for ATLAS ITk pixel modules."""
import os as _os

# torch (OpenMP) and numba (OpenMP layer) each keep a thread pool; by default OpenMP
# threads spin after every parallel region, and with pools taking turns on a 2-core
# machine the spinning costs up to 3x (measured: search 15 ms passive vs 45+ spinning).
# Set before torch/numba load; an explicit setting in the environment wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
_os.environ.setdefault("GOMP_SPINCOUNT", "0")

from ._version import __version__  # noqa: E402

__all__ = ["__version__", "Client"]


def __getattr__(name: str):
    # Lazy: importing vi_stream must not import requests (or torch) as a side effect.
    if name == "Client":
        from .client import Client
        return Client
    raise AttributeError(name)
