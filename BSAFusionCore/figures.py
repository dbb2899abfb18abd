"""Labelled figures: images side by side with a title over each and a caption.

Drawn with matplotlib (the ``plots`` extra). Without it the panels are written side by side without
labels, and the log says so.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .files import atomic_output
from .images import write_image

log = logging.getLogger(__name__)

WARNING_COLOUR = "#c00000"


def labelled_panels(
    path: Path, panels: list[tuple[str, np.ndarray]], caption: str, warning: str | None = None
) -> None:
    """Write ``panels`` (title, grey or RGB image in [0, 1]) side by side as a PNG at ``path``, with
    ``caption`` below and ``warning`` (if any) in red across the top."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed (pip install 'BSAFusionCore[plots]'): %s has no labels", path)
        tiles = [np.repeat(p[..., None], 3, axis=2) if p.ndim == 2 else p for _, p in panels]
        write_image(path, np.concatenate(tiles, axis=1))
        return
    figure, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 3.4 if warning else 3.15))
    for ax, (title, image) in zip(np.atleast_1d(axes), panels, strict=True):
        ax.imshow(np.clip(image, 0, 1), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    figure.text(0.5, 0.015, caption, ha="center", va="bottom", fontsize=8, wrap=True)
    if warning:
        figure.text(0.5, 0.985, warning, ha="center", va="top", fontsize=10, color=WARNING_COLOUR, weight="bold")
    figure.tight_layout(rect=(0, 0.07, 1, 0.92 if warning else 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        figure.savefig(tmp, dpi=100, format="png")
    plt.close(figure)
