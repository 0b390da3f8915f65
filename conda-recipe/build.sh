#!/bin/bash
# conda-build script (meta.yaml's build.script does the same; kept for older conda-build).
set -euo pipefail
"$PYTHON" -m pip install . --no-deps -vv
