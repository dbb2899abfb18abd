"""Instance refinement: a smooth correction of a predicted displacement, fitted to one pair's edges.

The network predicts a displacement from what it learned; this step then fits a correction to the pair
at hand, as classical registration does, starting from the network's answer. The correction is
Gaussian-smoothed noise on a coarse control grid (sigma :attr:`RefineOptions.smoothness` of the side: the
scale of the deformations the network was trained on), fitted with Adam to maximise the normalised
gradient fields similarity (NGF, Haber and Modersitzki 2006: edges aligned whatever their contrast) of
the fixed image and the warped moving one, under a Gaussian prior on the noise that keeps it small where
the images have no edges. Each slice of a batch is fitted on its own (the loss is a sum over slices and
Adam works element-wise), so batching changes the speed, not the result.

NGF has a bias that shows on every pair measured: it pulls the moving image's outline (a CT's skull, a
PET's or SPECT's brain) onto the MRI's, which is the scalp, so the refined displacement enlarges the moving
head (by ~1 px at 80 px from the centre on the ten aanlib CT cases, where the true fields scale it by
0.5 px at most). The two scans of one head show it at one size (a difference of scale is the
pre-alignment's to correct), so with :attr:`RefineOptions.remove_scaling` (the default) the isotropic
scaling about the centre of the fixed head that best explains the refined displacement over the head is
taken out of it, tapered to zero outside the head.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from kornia.filters import gaussian_blur2d
from scipy import ndimage
from torch import Tensor

from .network import warp_image
from .options import RefineOptions
from .progress import CancelFlag, check_cancel

log = logging.getLogger(__name__)

EDGE_BLUR_SIGMA = 1.0
"""Pixels of Gaussian blur before the image gradients of the similarity (tames pixel noise)."""
HEAD_THRESHOLD = 0.05
"""The fixed image's head: above this intensity (of [0, 1]), closed by 3 px and its holes filled."""
HEAD_TAPER_SIGMA = 4.0
"""Pixels of Gaussian blur of the head mask: how gradually the removed scaling fades outside the head."""
MAPPED_BINS = 24
"""The ``mapped`` similarity's intensity bins of the fixed head (equal counts of its pixels)."""
MAPPED_BLUR_SIGMA = 4.0
"""Pixels of Gaussian blur of each bin's map: the moving modality's resolution (a PET's, a SPECT's)."""
LNCC_RADIUS = 4
"""Half the side of the local correlation's square window, in pixels."""
LNCC_POOL = 2
"""The local correlation is taken on both images averaged over 2 x 2 pixels (a PET is blurred further)."""


def gaussian_blur(image: Tensor, sigma: float) -> Tensor:
    """Gaussian blur of (N, C, H, W) truncated at 3 sigma, edges replicated."""
    size = 2 * max(1, math.ceil(3 * sigma)) + 1
    return gaussian_blur2d(image, (size, size), (sigma, sigma), border_type="replicate")


def _gradients(image: Tensor) -> tuple[Tensor, Tensor]:
    """Central differences along columns and rows (zero on the border)."""
    gx = F.pad((image[..., :, 2:] - image[..., :, :-2]) / 2, (1, 1, 0, 0))
    gy = F.pad((image[..., 2:, :] - image[..., :-2, :]) / 2, (0, 0, 1, 1))
    return gx, gy


def _unit_gradients(image: Tensor, edge_noise: Tensor) -> tuple[Tensor, Tensor]:
    """The gradients divided by their regularised length (``edge_noise`` (N,): below it, a gradient is noise)."""
    gx, gy = _gradients(image)
    length = torch.sqrt(gx**2 + gy**2 + (edge_noise**2).view(-1, 1, 1, 1))
    return gx / length, gy / length


def ngf_distance(fixed: tuple[Tensor, Tensor], moving: Tensor, edge_noise: Tensor) -> Tensor:
    """Per slice: 1 - the mean squared cosine between the fixed image's unit gradients (from
    :func:`_unit_gradients`) and the moving image's. Lowest when the edges line up, whatever their contrast;
    a pixel without an edge in either image adds 1."""
    mx, my = _unit_gradients(moving, edge_noise)
    return 1 - ((fixed[0] * mx + fixed[1] * my) ** 2).mean(dim=(1, 2, 3))


def _box_sum(images: Tensor, radius: int) -> Tensor:
    """Sum over a (2 radius + 1)-pixel square around each pixel (zero outside the image), by running sums."""
    side = 2 * radius + 1
    rows = F.pad(images, (radius + 1, radius)).cumsum(-1)
    rows = rows[..., side:] - rows[..., :-side]
    columns = F.pad(rows, (0, 0, radius + 1, radius)).cumsum(-2)
    return columns[..., side:, :] - columns[..., :-side, :]


def lncc_distance(fixed: Tensor, moving: Tensor, radius: int = LNCC_RADIUS) -> Tensor:
    """Per slice: 1 - the mean squared local correlation of ``fixed`` and ``moving`` (N, 1, H, W) over square
    windows (their parts inside the image). Lowest when the two images agree up to a local linear change of
    intensity; flat regions add 1."""
    count = _box_sum(torch.ones_like(fixed[:1]), radius)
    mean = _box_sum(torch.cat((fixed, moving, fixed * fixed, moving * moving, fixed * moving), 1), radius) / count
    mf, mm, ff, mm2, fm = mean.unbind(1)
    covariance = fm - mf * mm
    squared = covariance**2 / ((ff - mf**2) * (mm2 - mm**2) + 1e-4)
    return 1 - squared.mean(dim=(1, 2))


def mapped_fixed(fixed: Tensor, moving: Tensor, head: Tensor) -> Tensor:
    """``fixed`` (N, 1, H, W) mapped to the intensities of ``moving`` (on the same grid, roughly aligned),
    slice by slice: the fixed head's pixels fall into :data:`MAPPED_BINS` bins of equal count (the outside is one
    more), each bin's map is blurred by :data:`MAPPED_BLUR_SIGMA`, and the moving image is fitted, by least
    squares, as a sum of these maps. A lookup of tissue (as the MRI's intensity tells it) to the moving
    modality's intensity at that modality's resolution; its few values are not moved by a misalignment of
    a few pixels."""
    mapped = torch.empty_like(fixed)
    for index in range(fixed.shape[0]):
        image, inside = fixed[index, 0], head[index, 0] > 0
        values = image[inside]
        bins = torch.zeros_like(image, dtype=torch.long)
        if values.numel() > MAPPED_BINS:
            edges = torch.quantile(values, torch.linspace(0, 1, MAPPED_BINS + 1, device=image.device)[1:-1])
            bins = torch.where(inside, torch.bucketize(image, edges) + 1, bins)
        maps = gaussian_blur(F.one_hot(bins, MAPPED_BINS + 1).permute(2, 0, 1)[None].float(), MAPPED_BLUR_SIGMA)
        design = maps[0].flatten(1).double()  # (bins, pixels)
        target = moving[index, 0].flatten().double()
        normal = design @ design.T + 1e-6 * torch.eye(design.shape[0], dtype=design.dtype, device=design.device)
        lookup = torch.linalg.solve(normal, design @ target)
        mapped[index, 0] = (lookup @ design).view_as(image).to(fixed.dtype)
    return mapped.clamp(0, 1)


def head_masks(fixed: Tensor) -> Tensor:
    """(N, 1, H, W) float masks of the head in each fixed slice (N, 1, H, W) in [0, 1]: the pixels above
    :data:`HEAD_THRESHOLD`, closed by 3 px, holes filled."""
    images = fixed.detach().float().cpu().numpy()[:, 0]
    masks = [ndimage.binary_fill_holes(ndimage.binary_closing(image > HEAD_THRESHOLD, iterations=3))
             for image in images]
    return torch.from_numpy(np.stack(masks)[:, None].astype(np.float32)).to(fixed.device)


def remove_scaling(displacement: Tensor, head: Tensor) -> Tensor:
    """``displacement`` (N, 2, H, W, px) without its isotropic scaling about the centre of ``head``
    (N, 1, H, W masks): the scale ``s`` that best explains the displacement over the head as
    ``s * (p - centre)`` is fitted by least squares and subtracted, tapered by the blurred mask."""
    _, _, height, width = displacement.shape
    rows, columns = torch.meshgrid(torch.arange(height, dtype=displacement.dtype, device=displacement.device),
                                   torch.arange(width, dtype=displacement.dtype, device=displacement.device),
                                   indexing="ij")
    grid = torch.stack((columns, rows))[None]  # (1, 2, H, W): x along columns, y along rows
    area = head.sum(dim=(2, 3), keepdim=True).clamp_min(1)
    offset = grid - (grid * head).sum(dim=(2, 3), keepdim=True) / area  # p - centre
    along = ((displacement * offset).sum(dim=1, keepdim=True) * head).sum(dim=(1, 2, 3))
    spread = ((offset**2).sum(dim=1, keepdim=True) * head).sum(dim=(1, 2, 3)).clamp_min(1e-6)
    scale = (along / spread).view(-1, 1, 1, 1)  # 0 where a slice has no head
    return displacement - scale * offset * gaussian_blur(head, HEAD_TAPER_SIGMA)


def _similarity_distance(similarity: str, fixed: Tensor, edge_noise_factor: float) -> Callable[[Tensor], Tensor]:
    """The per-slice distance of a warped moving image to ``fixed`` (blurred) under ``similarity``, with what
    depends on the fixed image alone computed once."""
    if similarity == "mapped":
        fixed_coarse = F.avg_pool2d(fixed, LNCC_POOL)
        return lambda warped: lncc_distance(fixed_coarse, F.avg_pool2d(warped, LNCC_POOL), LNCC_RADIUS // LNCC_POOL)
    gx, gy = _gradients(fixed)
    edge_noise = edge_noise_factor * torch.cat((gx.abs(), gy.abs()), 1).mean(dim=(1, 2, 3))
    fixed_edges = _unit_gradients(fixed, edge_noise)
    return lambda warped: ngf_distance(fixed_edges, warped, edge_noise)


def refine_displacement(fixed: Tensor, moving: Tensor, displacement: Tensor,
                        options: RefineOptions | None = None, cancel: CancelFlag | None = None, *,
                        modality: str | None = None) -> Tensor:
    """The displacement (N, 2, H, W, pixels) refined for the pair ``fixed`` (N, 1, H, W) and ``moving``
    (N, 1, H, W; the luminance of a colour image), both in [0, 1] on one grid; ``modality`` (the moving
    image's) picks the similarity where ``options`` names none. Inputs are not modified."""
    options = options or RefineOptions()
    if fixed.shape[1] != 1 or moving.shape[1] != 1:
        raise ValueError(f"refinement takes one-channel images, got {tuple(fixed.shape)} and {tuple(moving.shape)}")
    n, _, height, width = fixed.shape
    similarity = options.similarity_for(modality)
    head = head_masks(fixed) if options.remove_scaling or similarity == "mapped" else None
    if similarity == "mapped":
        fixed = mapped_fixed(fixed.detach().float(), warp_image(moving.detach().float(), displacement.float()), head)
    with torch.inference_mode(False), torch.enable_grad():
        # blurred once before warping: the correction is smooth, so blur-then-warp ~ warp-then-blur
        fixed = gaussian_blur(fixed.detach().float(), EDGE_BLUR_SIGMA)
        moving = gaussian_blur(moving.detach().float(), EDGE_BLUR_SIGMA)
        start = displacement.detach().float().clone()
        distance_to_fixed = _similarity_distance(similarity, fixed, options.edge_noise)
        spacing = options.grid_spacing
        grid = (max(2, math.ceil(height / spacing)), max(2, math.ceil(width / spacing)))
        sigma = options.smoothness * (height + width) / 2 / spacing  # in control points
        scale = 2 * math.sqrt(math.pi) * sigma  # unit control noise -> about 1 px of displacement
        noise = torch.zeros(n, 2, *grid, device=fixed.device, requires_grad=True)
        optimiser = torch.optim.Adam([noise], lr=options.step / scale)

        def field() -> Tensor:
            smooth = gaussian_blur(noise, sigma) * scale
            return start + F.interpolate(smooth, size=(height, width), mode="bilinear", align_corners=False)

        for iteration in range(options.iterations):
            if iteration % 20 == 0:
                check_cancel(cancel)
            distance = distance_to_fixed(warp_image(moving, field()))
            prior = options.prior_weight * (noise**2).sum(dim=(1, 2, 3)) / (2 * height * width)
            optimiser.zero_grad(set_to_none=True)
            (distance + prior).sum().backward()
            optimiser.step()
        with torch.no_grad():
            refined = field()
            if options.remove_scaling:
                refined = remove_scaling(refined, head)
    log.debug("refined %d slices (%s): mean correction %.3f px", n, similarity,
              float((refined - start).norm(dim=1).mean()))
    return refined.to(displacement.dtype)
