"""Tiled inference with whole-image instance-norm statistics (issue 22).

:mod:`.split` cuts an exported style model at its instance norms into layer groups;
:mod:`.exact` runs them tile by tile with halos and whole-image statistics, on the
compiled parts of any engine (:meth:`Engine.compile_part`), so a photo of any size runs in
bounded memory with the untiled network's output.
"""

from robust_style.server.tiling.exact import TileConfig, TiledRunner, tiles
from robust_style.server.tiling.split import NotTileable, Segment, SplitModel, split_model

__all__ = ["NotTileable", "Segment", "SplitModel", "TileConfig", "TiledRunner", "split_model",
           "tiles"]
