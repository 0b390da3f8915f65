"""The manual (docs/, mkdocs.yml) builds strictly with mkdocs-material and with zensical, its successor,
and its generated REST reference is what the daemon's /openapi.json says. README stays a front page."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from .helpers import ROOT

BIN = os.path.dirname(sys.executable)
ENV = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}


def _site_copy(tmp_path) -> str:
    """The manual's sources in a folder of the test's own, so a build writes nothing into the checkout."""
    shutil.copy(os.path.join(ROOT, "mkdocs.yml"), tmp_path / "mkdocs.yml")
    shutil.copytree(os.path.join(ROOT, "docs"), tmp_path / "docs")
    return str(tmp_path)


def test_rest_reference_is_generated_from_openapi():
    p = subprocess.run([sys.executable, os.path.join(ROOT, "docs", "gen_rest.py"), "--check"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr


def test_mkdocs_builds_strictly(tmp_path):
    where = _site_copy(tmp_path)
    p = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "out")],
                       cwd=where, capture_output=True, text=True, timeout=300, env=ENV)
    assert p.returncode == 0, p.stdout + p.stderr
    assert (tmp_path / "out" / "reference" / "rest-api" / "index.html").exists()
    assert (tmp_path / "out" / "security" / "index.html").exists()


def test_mkdocs_strict_fails_on_a_broken_link(tmp_path):
    """The strict build is a real check: a link to a page that does not exist fails it."""
    where = _site_copy(tmp_path)
    with open(os.path.join(where, "docs", "install.md"), "a") as f:
        f.write("\nSee [nowhere](no-such-page.md).\n")
    p = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "out")],
                       cwd=where, capture_output=True, text=True, timeout=300, env=ENV)
    assert p.returncode != 0
    assert "no-such-page.md" in p.stdout + p.stderr


def test_zensical_builds_the_same_config(tmp_path):
    exe = os.path.join(BIN, "zensical")
    if not os.path.exists(exe):
        pytest.skip("zensical is not installed (pip install '.[docs]')")
    where = _site_copy(tmp_path)
    p = subprocess.run([exe, "build", "--strict", "-f", "mkdocs.yml"], cwd=where,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert os.path.exists(os.path.join(where, "site", "index.html"))


def test_readme_is_a_front_page_that_points_into_the_manual():
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    assert len(text.splitlines()) <= 150
    for line in ("make demo", "make test"):
        assert line in text
    linked = {part.split(")")[0] for part in text.split("](docs/")[1:]}
    assert linked, "README links no page of the manual"
    for target in linked:
        assert os.path.exists(os.path.join(ROOT, "docs", target.split("#")[0])), target
