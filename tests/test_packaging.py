"""Packaging stays consistent: conda recipe vs setup.py, docker, entry point."""
import os
import re
import subprocess
import sys

from .helpers import ROOT

# PyPI name -> conda-forge name where they differ
CONDA_NAME = {"opencv-python-headless": "py-opencv", "torch": "pytorch", "PyYAML": "pyyaml",
              "prometheus-client": "prometheus_client"}


def _setup_requires():
    text = open(os.path.join(ROOT, "setup.py")).read()
    block = text[text.index("REQUIRES = ["):text.index("]", text.index("REQUIRES = ["))]
    return dict(re.findall(r'"([A-Za-z0-9_.\-]+)(>=[^"]+)"', block))


def test_conda_recipe_run_requirements_match_setup_py():
    meta = open(os.path.join(ROOT, "conda-recipe", "meta.yaml")).read()
    run = meta[meta.index("  run:"):meta.index("test:")]
    active = dict(re.findall(r"^    - ([A-Za-z0-9_.\-]+) (>=\S+)$", run, re.M))
    commented = dict(re.findall(r"^    # - ([A-Za-z0-9_.\-]+) (>=\S+)$", run, re.M))
    for name, spec in _setup_requires().items():
        conda = CONDA_NAME.get(name, name)
        assert active.get(conda, commented.get(conda)) == spec, f"{name}{spec} missing or different in meta.yaml"
    assert "vi_stream = vi_stream.cli:main" in meta and "vi_stream --help" in meta


def test_entry_point_and_version_single_source():
    setup = open(os.path.join(ROOT, "setup.py")).read()
    assert '"vi_stream = vi_stream.cli:main"' in setup and 'about["__version__"]' in setup
    from vi_stream import __version__
    out = subprocess.run([sys.executable, "-m", "vi_stream.cli", "--version"], capture_output=True, text=True)
    assert out.stdout.strip() == f"vi_stream {__version__}"


def test_dockerfile_pins_cpu_torch_runs_the_daemon_and_checks_health():
    d = open(os.path.join(ROOT, "docker", "Dockerfile")).read()
    assert 'ENTRYPOINT ["vi_stream", "run"]' in d and "HEALTHCHECK" in d and "/status" in d
    assert "ARG TORCH_INDEX=" in d and "whl/cpu" in d and "USER vi_stream" in d
    build = open(os.path.join(ROOT, "docker", "build.sh")).read()
    assert 'if [ -n "$push" ]' in build  # pushes only when asked
    p = subprocess.run(["bash", "-n", os.path.join(ROOT, "docker", "build.sh")], capture_output=True)
    assert p.returncode == 0


def test_the_wheel_carries_the_operators_page(tmp_path):
    """The page is package data: an installed vi_stream (pip, conda, docker) serves it with no checkout."""
    import zipfile
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(tmp_path), ROOT], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-2000:]
    wheel = next(f for f in os.listdir(tmp_path) if f.endswith(".whl"))
    names = set(zipfile.ZipFile(os.path.join(tmp_path, wheel)).namelist())
    shipped = {f"vi_stream/web/static/{f}" for f in os.listdir(os.path.join(ROOT, "vi_stream", "web", "static"))}
    assert shipped and shipped <= names, shipped - names
