"""bench/README.md and README's headline are what bench/results/*.json say (no figure typed twice)."""
import os
import subprocess
import sys

from .helpers import ROOT


def test_generated_benchmark_pages_are_up_to_date():
    p = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "report.py"), "--check"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr


def test_every_results_file_has_a_section():
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    try:
        import report
    finally:
        sys.path.pop(0)
    page = report.bench_readme()
    for name in sorted(os.listdir(report.RESULTS)):
        if name.endswith(".json"):
            assert f"bench/{name[:-5]}.py" in page, name
