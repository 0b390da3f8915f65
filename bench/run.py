"""Run every benchmark; results land in bench/results/*.json, then bench/README.md and README's
headline are regenerated from them (bench/report.py)."""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
for script in ("speed.py", "quality.py", "memory.py", "stream.py", "store.py", "soak.py", "report.py"):
    print(f"== {script}", flush=True)
    subprocess.run([sys.executable, os.path.join(HERE, script)], check=True, cwd=HERE)
