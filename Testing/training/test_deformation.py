"""The synthetic deformation generator and its ground truth."""

from __future__ import annotations

import pytest
import torch

from BSAFusionCore.deformation import invert_displacement, random_deformation, random_displacement
from BSAFusionCore.errors import InputError
from BSAFusionCore.network import warp_image

INTERIOR = (slice(None), slice(None), slice(16, -16), slice(16, -16))


def test_published_size_at_256() -> None:
    d = random_displacement(8, 256, 256, generator=torch.Generator().manual_seed(1))
    magnitude = d.norm(dim=1)
    assert d.shape == (8, 2, 256, 256)
    assert 3.0 < magnitude.mean() < 5.5  # spec: a mean near 4 px
    assert 7.0 < magnitude.amax(dim=(1, 2)).mean() < 18.0  # spec: up to about 12 px


def test_seedable_and_seed_dependent() -> None:
    images = torch.rand(2, 1, 64, 64)
    a = random_deformation(images, generator=torch.Generator().manual_seed(5))
    b = random_deformation(images, generator=torch.Generator().manual_seed(5))
    c = random_deformation(images, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


def test_magnitude_scales_the_elastic_part() -> None:
    small = random_displacement(1, 64, 64, generator=torch.Generator().manual_seed(2), max_translation=0.0)
    large = random_displacement(
        1, 64, 64, generator=torch.Generator().manual_seed(2), max_translation=0.0, elastic_magnitude=3.0
    )
    torch.testing.assert_close(large, 3 * small)


def test_deformed_image_is_the_image_at_the_displaced_points() -> None:
    """On a linear ramp bilinear sampling is exact, so the displacement can be read off the image."""
    size = 128
    y, x = torch.meshgrid(torch.arange(float(size)), torch.arange(float(size)), indexing="ij")
    ramps = torch.stack((x, y)).unsqueeze(0).repeat(2, 1, 1, 1)  # channel 0 = column, 1 = row
    deformed, d = random_deformation(ramps.double(), generator=torch.Generator().manual_seed(3))
    measured = deformed - ramps
    margin = int(d.abs().max().ceil()) + 1  # where no sample point falls outside the image
    inner = (slice(None), slice(None), slice(margin, -margin), slice(margin, -margin))
    assert margin < 20
    torch.testing.assert_close(measured[inner], d[inner], atol=1e-9, rtol=0)


def test_inverse_aligns_the_deformed_image_back() -> None:
    size = 256
    y, x = torch.meshgrid(torch.arange(float(size)), torch.arange(float(size)), indexing="ij")
    image = (torch.sin(x / 9) * torch.cos(y / 13)).expand(2, 1, size, size).contiguous()
    deformed, d = random_deformation(image, generator=torch.Generator().manual_seed(4))
    inverse = invert_displacement(d)
    # Position error of the composed mapping p -> p + f(p) -> + d(p + f(p)), in pixels.
    residual = (inverse + warp_image(d, inverse)).norm(dim=1)
    assert residual[:, 16:-16, 16:-16].max() < 0.01
    restored = warp_image(deformed, inverse)
    before = (deformed - image)[INTERIOR].abs().mean()
    after = (restored - image)[INTERIOR].abs().mean()
    assert after < 0.02 * before


def test_bad_arguments_raise() -> None:
    with pytest.raises(InputError, match="odd"):
        random_displacement(1, 32, 32, elastic_kernel=10)
    with pytest.raises(InputError, match=r"\(N,C,H,W\)"):
        random_deformation(torch.rand(32, 32))


def test_small_images_and_input_untouched() -> None:
    images = torch.rand(2, 3, 32, 32)
    copy = images.clone()
    deformed, d = random_deformation(images, generator=torch.Generator().manual_seed(0))
    assert deformed.shape == images.shape and d.shape == (2, 2, 32, 32)
    assert torch.equal(images, copy)
