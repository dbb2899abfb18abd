"""Running a model: register and fuse batches of tensors (:func:`fuse_batch`) or one pair of numpy
images (:func:`fuse_images`) at the model's working size, results back at the input size."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from torch import Tensor

from .color import rgb_to_ycbcr, ycbcr_to_rgb
from .errors import InputError
from .geometry import compose_with_prealignment, overlap_fraction, pixel_image, pixel_points
from .memory import DEFAULT_MAX_MEMORY_GB, check_2d_memory
from .model import FusionModel, as_model
from .network import resize_flow, resize_image, warp_image
from .options import DEFAULT_PREALIGN_2D, MIN_SIZE, RefineOptions, check_refine_request, refine_warning
from .prealign import check_prealign_mode
from .prealign import prealign as run_prealignment
from .progress import CancelFlag
from .refinement import refine_displacement

log = logging.getLogger(__name__)


@dataclass
class BatchFusion:
    """Results for a batch, on the CPU, float32, on the input grid."""

    fused: Tensor
    warped: Tensor | None  # None when not asked for (``with_warped=False``)
    displacement: Tensor  # (N, 2, H, W) pixels: [:, 0] along columns (x), [:, 1] along rows (y)


@dataclass
class FusionResult:
    """Results for one pair of numpy images."""

    fused: np.ndarray
    warped: np.ndarray
    displacement: np.ndarray  # (H, W, 2) pixels: [..., 0] along columns (x), [..., 1] along rows (y)
    prealignment: sitk.Transform | None = None  # pixel coordinates (x, y), fixed -> moving; in displacement


def check_pair(fixed: Tensor, moving: Tensor) -> None:
    """Shapes, channels, size and value range of a batch; raises :class:`InputError`."""
    for name, image in (("fixed", fixed), ("moving", moving)):
        if not isinstance(image, Tensor):
            raise InputError(
                f"{name} must be a torch tensor (N, C, H, W), got {type(image).__name__}; "
                "for numpy images use fuse_images"
            )
        if image.dim() >= 2 and min(image.shape[-2:]) < MIN_SIZE:
            raise InputError(
                f"images must be at least {MIN_SIZE}x{MIN_SIZE} pixels; {name} is "
                f"{image.shape[-2]}x{image.shape[-1]}"
            )
    if fixed.dim() != 4 or fixed.shape[1] != 1:
        raise InputError(f"fixed must be (N, 1, H, W), got {tuple(fixed.shape)}")
    if moving.dim() != 4 or moving.shape[1] not in (1, 3):
        raise InputError(f"moving must be (N, 1, H, W) or (N, 3, H, W) RGB, got {tuple(moving.shape)}")
    if fixed.shape[0] != moving.shape[0] or fixed.shape[-2:] != moving.shape[-2:]:
        raise InputError(
            f"fixed {tuple(fixed.shape)} and moving {tuple(moving.shape)} differ in batch or image size"
        )
    for name, image in (("fixed", fixed), ("moving", moving)):
        if not torch.is_floating_point(image):
            raise InputError(f"{name} must be a floating-point image in [0, 1], got {image.dtype}")
        if not torch.isfinite(image).all():
            raise InputError(f"{name} contains NaN or infinite values")
        low, high = float(image.min()), float(image.max())
        if low < 0.0 or high > 1.0:
            raise InputError(f"{name} values must lie in [0, 1], found [{low:.4g}, {high:.4g}]")


def fuse_batch(model: FusionModel | str | Path, fixed: Tensor, moving: Tensor, *,
               zero_displacement: bool = False, with_warped: bool = True,
               refine: bool | RefineOptions = False, cancel: CancelFlag | None = None) -> BatchFusion:
    """Register and fuse a batch: ``fixed`` (N,1,H,W), ``moving`` (N,1,H,W) or RGB (N,3,H,W), in [0, 1].

    The network runs at ``model.image_size``; results come back at the input size, with the
    displacement in the input's pixels. Weights whose ``registration_size`` differs from their
    ``image_size`` run in two passes: the displacement at ``registration_size``, then the fusion at
    ``image_size`` of the fixed image and the moving image warped by it (the fusion with zero flow);
    so do weights whose fusion pass has its own network (``model.fusion_net``).
    ``zero_displacement=True`` fuses without registering; weights that do not register
    (``model.registers`` False) always take that path, which skips the registration net and gives the
    same result. ``with_warped=False`` skips returning the warped moving image (for callers that warp it
    themselves, as the volume pipeline does in 3-D). ``refine`` (True, or :class:`RefineOptions`) fits a
    smooth correction of the network's displacement to each pair (``BSAFusionCore.refinement``, with the
    similarity of the model's modality; measured to help, see ``REFINE_MODALITIES``) before the fusion,
    which then runs on the warped moving image (the second pass above); weights that do not register
    ignore it, and with ``zero_displacement`` it is refused. ``cancel`` (e.g. a :class:`threading.Event`)
    stops the refinement between its iterations.
    """
    check_pair(fixed, moving)
    refinement = check_refine_request(refine, zero_displacement)
    return _fuse_checked(as_model(model), fixed, moving, zero_displacement, with_warped, refinement, cancel)


def _run_network(model: FusionModel, fixed: Tensor, moving: Tensor, *, fuse: bool = True,
                 register: bool = True) -> tuple[Tensor | None, Tensor | None]:
    """(fused, flow) of the engine on working-size tensors, ``model.network_batch`` slices per call;
    ``register=False`` fuses with zero flow (flow None), ``fuse=False`` only registers (fused None)."""
    fused_parts, flow_parts = [], []
    for fixed_part, moving_part in zip(fixed.split(model.network_batch), moving.split(model.network_batch),
                                       strict=True):
        with model.autocast():
            if not register:
                fused_parts.append(model.fusion_engine.fuse_aligned(fixed_part, moving_part))
                continue
            out = model.engine(fixed_part, moving_part, with_discriminator=False, with_fusion=fuse)
            flow_parts.append(out.flow)
            if fuse:
                fused_parts.append(out.fused)
    return (torch.cat(fused_parts).float() if fused_parts else None,
            torch.cat(flow_parts).float() if flow_parts else None)


@torch.inference_mode()
def _fuse_checked(model: FusionModel, fixed: Tensor, moving: Tensor, zero_displacement: bool,
                  with_warped: bool = True, refine: RefineOptions | None = None,
                  cancel: CancelFlag | None = None) -> BatchFusion:
    """:func:`fuse_batch` on a pair :func:`check_pair` has accepted."""
    register = not zero_displacement and model.registers
    shape = tuple(fixed.shape[-2:])
    size, registration_size = model.image_size, model.registration_size
    fixed = fixed.to(model.device, torch.float32)
    moving = moving.to(model.device, torch.float32)
    ycbcr = rgb_to_ycbcr(moving) if moving.shape[1] == 3 else None
    source = moving if ycbcr is None else ycbcr  # what is warped: the grey image, or Y, Cb, Cr at once
    fixed_w = resize_image(fixed, (size, size))
    moved = None  # ``source`` warped by the displacement
    if not register:
        fused_w, _ = _run_network(model, fixed_w, resize_image(source[:, :1], (size, size)), register=False)
        displacement = fixed.new_zeros(fixed.shape[0], 2, *shape)
        moved = source
    elif not model.two_passes and refine is None:
        fused_w, flow = _run_network(model, fixed_w, resize_image(source[:, :1], (size, size)))
        displacement = resize_flow(flow, shape)
    else:
        square = (registration_size, registration_size)
        _, flow = _run_network(model, resize_image(fixed, square), resize_image(source[:, :1], square), fuse=False)
        if refine is not None:  # at the working size: the registration's may be coarser
            moving_w = resize_image(source[:, :1], (size, size))
            flow = refine_displacement(fixed_w, moving_w, resize_flow(flow, (size, size)), refine, cancel,
                                       modality=model.modality)
        displacement = resize_flow(flow, shape)
        moved = warp_image(source, displacement)
        fused_w, _ = _run_network(model, fixed_w, resize_image(moved[:, :1], (size, size)), register=False)
    if moved is None and (with_warped or ycbcr is not None):
        moved = warp_image(source, displacement)
    warped = None
    if with_warped and ycbcr is None:
        warped = moved.float().cpu()
    elif with_warped:  # in RGB: the published Y, Cb, Cr conversions are not each other's inverse
        warped = (warp_image(moving, displacement) if register else moving).float().cpu()
    fused = resize_image(fused_w, shape).clamp(0, 1)
    if ycbcr is not None:
        fused = ycbcr_to_rgb(torch.cat((fused, moved[:, 1:]), dim=1)).clamp(0, 1)
    return BatchFusion(fused=fused.float().cpu(), warped=warped, displacement=displacement.float().cpu())


def _image_tensor(image: np.ndarray, name: str) -> Tensor:
    array = np.asarray(image)
    if array.ndim == 2:
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None, None]
    if array.ndim == 3 and array.shape[2] == 3:
        return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1), dtype=np.float32))[None]
    raise InputError(f"{name} must be (H, W) or (H, W, 3) RGB, got shape {array.shape}")


def fuse_images(fixed: np.ndarray, moving: np.ndarray, model: FusionModel | str | Path, *,
                prealign: str = DEFAULT_PREALIGN_2D, max_memory_gb: float | None = DEFAULT_MAX_MEMORY_GB,
                zero_displacement: bool = False, refine: bool | RefineOptions = False) -> FusionResult:
    """Register and fuse one pair: ``fixed`` (H, W) MRI, ``moving`` (H, W) or (H, W, 3) RGB, in [0, 1].

    ``model``: a loaded :class:`FusionModel`, a bundled name ("CT", "PET", "SPECT") or a weights path.
    ``prealign``: "rigid" or "affine" first aligns the moving image by mutual information (as the
    volume pipeline does in 3-D), and the network registers and fuses what is left; "none" (the
    default, for pairs that are roughly aligned) gives the pair to the network as it is. The
    displacement and the warped image include the pre-alignment (the moving image is resampled
    once). A pair whose estimated memory exceeds ``max_memory_gb`` (None: no limit) is refused
    before any work. ``refine``: as in :func:`fuse_batch`.
    """
    check_prealign_mode(prealign)
    refinement = check_refine_request(refine, zero_displacement)
    if np.asarray(fixed).ndim != 2:
        raise InputError(f"fixed must be a 2D (H, W) grayscale image, got shape {np.asarray(fixed).shape}")
    height, width = np.asarray(fixed).shape
    channels = 3 if np.asarray(moving).ndim == 3 else 1
    check_2d_memory(height, width, channels, max_memory_gb)
    fixed_t, moving_t = _image_tensor(fixed, "fixed"), _image_tensor(moving, "moving")
    check_pair(fixed_t, moving_t)
    for name, image in (("fixed", fixed_t), ("moving", moving_t)):
        if float(image.max()) == float(image.min()):  # as volumes: nothing to register or fuse
            raise InputError(f"the {name} image has a single intensity value ({float(image.min()):g}); "
                             "it has no contrast to register or fuse")
    model = as_model(model)
    if warning := refine_warning(refinement, model.modality):
        log.warning(warning)
    fixed_image, moving_image = pixel_image(np.asarray(fixed)), pixel_image(np.asarray(moving))
    transform = run_prealignment(fixed_image, moving_image, prealign)
    if transform is None:
        out = _fuse_checked(model, fixed_t, moving_t, zero_displacement, refine=refinement)
        warped, displacement = out.warped, out.displacement
    else:
        if overlap_fraction(fixed_image, moving_image, transform) == 0.0:
            raise InputError("after pre-alignment the moving image lies outside the fixed one; "
                             "check the pair, or try prealign='none'")
        points = pixel_points(height, width)
        to_moving = compose_with_prealignment(np.zeros_like(points), points, transform)
        prealigned = warp_image(moving_t, _displacement_tensor(to_moving))
        out = _fuse_checked(model, fixed_t, prealigned, zero_displacement, with_warped=False, refine=refinement)
        displacement = _displacement_tensor(compose_with_prealignment(_as_hw2(out.displacement), points, transform))
        warped = warp_image(moving_t, displacement)

    def to_numpy(t: Tensor) -> np.ndarray:
        array = t[0].numpy()
        return array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)

    return FusionResult(fused=to_numpy(out.fused), warped=to_numpy(warped), displacement=_as_hw2(displacement),
                        prealignment=transform)


def _as_hw2(displacement: Tensor) -> np.ndarray:
    """(1, 2, H, W) tensor -> (H, W, 2) float64 array."""
    return displacement[0].permute(1, 2, 0).double().numpy()


def _displacement_tensor(displacement: np.ndarray) -> Tensor:
    """(H, W, 2) array -> (1, 2, H, W) float32 tensor."""
    return torch.from_numpy(np.ascontiguousarray(displacement.transpose(2, 0, 1), dtype=np.float32))[None]

