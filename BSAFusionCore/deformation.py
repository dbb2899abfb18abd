"""Synthetic deformations (affine translation + elastic) with their exact ground truth.

Convention (the inference API's): a displacement ``d`` (N,2,H,W) is in pixels, channel 0 along
columns (x), channel 1 along rows (y), and ``warp_image(image, d)(i, j)`` samples ``image`` at
``(x=j+d0, y=i+d1)``.
"""

from __future__ import annotations

import torch
from kornia.filters import gaussian_blur2d
from torch import Tensor

from .errors import InputError
from .network.warp import warp_image


def _uniform(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> Tensor:
    """Uniform noise in [-1, 1], drawn on the generator's device and moved to ``device``."""
    gen_device = generator.device if generator is not None else device
    return (torch.rand(shape, generator=generator, device=gen_device) * 2 - 1).to(device)


def random_displacement(
    batch: int,
    height: int,
    width: int,
    *,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
    max_translation: float = 0.01,
    elastic_magnitude: float = 1.0,
    elastic_sigma: float = 16.0,
    elastic_kernel: int = 101,
) -> Tensor:
    """A random displacement (N,2,H,W) in pixels: a translation plus a smooth elastic field.

    The translation is uniform in +-``max_translation`` of the image size per axis. The elastic
    part is uniform noise in [-1, 1] per pixel and axis, Gaussian-blurred (``elastic_kernel``,
    ``elastic_sigma``) and scaled by the image size times ``elastic_magnitude``, as the published
    training does (mean near 4 px at 256x256 with the defaults).
    """
    if elastic_kernel < 1 or elastic_kernel % 2 == 0:
        raise InputError(f"elastic_kernel must be a positive odd number, got {elastic_kernel}")
    if elastic_sigma <= 0:
        raise InputError(f"elastic_sigma must be positive, got {elastic_sigma}")
    device = torch.device(device)
    size = torch.tensor([width, height], dtype=torch.float32, device=device).view(1, 2, 1, 1)
    translation = _uniform((batch, 2, 1, 1), generator, device) * max_translation * size
    noise = _uniform((batch, 2, height, width), generator, device)
    # Reflect padding (the published choice) needs the half kernel inside the image.
    border = "reflect" if elastic_kernel // 2 < min(height, width) else "replicate"
    elastic = gaussian_blur2d(noise, elastic_kernel, (elastic_sigma, elastic_sigma), border_type=border)
    return translation + elastic * size * elastic_magnitude


def random_deformation(
    images: Tensor,
    *,
    generator: torch.Generator | None = None,
    max_translation: float = 0.01,
    elastic_magnitude: float = 1.0,
    elastic_sigma: float = 16.0,
    elastic_kernel: int = 101,
) -> tuple[Tensor, Tensor]:
    """Deform ``images`` (N,C,H,W) randomly; return ``(deformed, displacement)``.

    ``deformed(i, j)`` is ``images`` sampled at ``(x=j+d0, y=i+d1)`` (bilinear, border values),
    ``displacement`` is ``d`` (N,2,H,W) in pixels, on the images' device. The flow that aligns
    ``deformed`` back onto ``images`` is :func:`invert_displacement` of ``d``.
    """
    if images.ndim != 4:
        raise InputError(f"images must be (N,C,H,W), got shape {tuple(images.shape)}")
    n, _, h, w = images.shape
    displacement = random_displacement(
        n,
        h,
        w,
        device=images.device,
        generator=generator,
        max_translation=max_translation,
        elastic_magnitude=elastic_magnitude,
        elastic_sigma=elastic_sigma,
        elastic_kernel=elastic_kernel,
    ).to(images.dtype)
    return warp_image(images, displacement), displacement


def invert_displacement(displacement: Tensor, iterations: int = 20) -> Tensor:
    """The displacement ``f`` with ``warp_image(warp_image(x, d), f) == x`` (fixed-point iteration).

    Solves ``f(p) = -d(p + f(p))``; converges for smooth fields such as those of
    :func:`random_displacement`.
    """
    inverse = -displacement
    for _ in range(iterations):
        inverse = -warp_image(displacement, inverse)
    return inverse
