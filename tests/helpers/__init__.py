"""What the tests share: the repository's root, the small model's settings, running daemons
(:mod:`.daemon`), stored records (:mod:`.store`), a loopback sshd and Slurm cluster (:mod:`.cluster`),
model files altered on purpose (:mod:`.modelfiles`), raw sockets (:mod:`.http`), psi-bsread
(:mod:`.bsread`) and frames as a camera sends them (:mod:`.rest`). The browser is a fixture of tests/web.
Test modules import from here, never from one another."""
from __future__ import annotations

import os

from vi_stream.model import ModelConfig

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMALL_SHAPE = (512, 512)
SMALL_CONFIG = ModelConfig(bank_size=40_000, cells=256)
