"""Frames with module and side, as a camera sends them, for the REST and registry tests."""
from __future__ import annotations

import numpy as np

from vi_stream.evaluation import synthetic
from vi_stream.io import bsread_codec as codec

from . import SMALL_SHAPE


def frame(pulse: int, img: np.ndarray, module: str, side: str) -> list[bytes]:
    m = codec.Message(pulse, 1_700_000_000 + pulse, 0)
    m.channels["CAM:FPICTURE"] = codec.channel_from_value("CAM:FPICTURE", img)
    m.channels["CAM:MODULE"] = codec.channel_from_value("CAM:MODULE", module)
    m.channels["CAM:SIDE"] = codec.channel_from_value("CAM:SIDE", side)
    m.channels["CAM:TAG"] = codec.channel_from_value("CAM:TAG", "before bonding")
    return codec.Encoder().encode(m)


IMAGES = [synthetic.module_image(SMALL_SHAPE, seed=9600 + i, defects=("scratch",) if i == 1 else ()).image
          for i in range(3)]
