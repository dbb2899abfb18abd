"""Built-in example data: a 2D head phantom as MRI, CT, PET and SPECT, with a known deformation.

Used by the demo and the tests, so that nothing has to be downloaded.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from .errors import InputError
from .network import warp_image

# (centre y, centre x, radius y, radius x), then the value per modality (MRI T1-like, CT-like, PET-like uptake,
# SPECT-like perfusion), drawn in order.
_STRUCTURES = (
    (0.00, 0.00, 0.92, 0.74, 0.15, 1.00, 0.00, 0.00),   # skull: dark in MRI, bright in CT, no uptake
    (0.00, 0.00, 0.84, 0.66, 0.35, 0.30, 0.10, 0.10),   # cerebrospinal fluid / cortex rim
    (0.00, 0.00, 0.78, 0.60, 0.60, 0.42, 0.90, 0.85),   # grey matter: the highest uptake
    (0.02, 0.00, 0.58, 0.44, 0.85, 0.46, 0.45, 0.50),   # white matter
    (0.05, -0.14, 0.16, 0.06, 0.20, 0.33, 0.05, 0.05),  # left ventricle
    (0.05, 0.14, 0.16, 0.06, 0.20, 0.33, 0.05, 0.05),   # right ventricle
    (-0.45, 0.25, 0.10, 0.08, 0.95, 0.55, 1.00, 0.30),  # a lesion-like blob: hot in PET, hypoperfused in SPECT
    (0.55, -0.30, 0.07, 0.07, 0.10, 0.85, 0.90, 0.85),  # a calcification: CT only
)
_COLUMN = {"MRI": 4, "CT": 5, "PET": 6, "SPECT": 7}
_BLUR = {"PET": 1 / 96, "SPECT": 1 / 64}  # the nuclear images' resolution: Gaussian sigma per image side


def head_phantom(size: int = 256, modality: str = "MRI") -> np.ndarray:
    """A (size, size) float32 head-like image in [0, 1] with MRI-, CT-, PET- or SPECT-like contrast."""
    name = modality.upper()
    if name not in _COLUMN:
        raise InputError(f"no phantom for modality {modality!r}; choose one of {', '.join(_COLUMN)}")
    y, x = np.mgrid[-1:1:complex(size), -1:1:complex(size)]
    image = np.zeros((size, size), np.float32)
    for structure in _STRUCTURES:
        cy, cx, ry, rx = structure[:4]
        image[((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1.0] = structure[_COLUMN[name]]
    if name in _BLUR:
        image = gaussian_filter(image, sigma=size * _BLUR[name])
    texture = 0.03 * np.sin(23 * x) * np.cos(17 * y) if name == "MRI" else 0.0
    return np.clip(image + texture * (image > 0.3), 0, 1).astype(np.float32)


def smooth_displacement(size: int, magnitude: float = 4.0, seed: int = 0) -> np.ndarray:
    """A smooth (size, size, 2) displacement in pixels: a shift plus low-frequency waves."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:1:complex(size), 0:1:complex(size)]
    shift = rng.uniform(-0.5, 0.5, 2) * magnitude
    phase = rng.uniform(0, 2 * np.pi, 4)
    dx = shift[0] + 0.5 * magnitude * np.sin(2 * np.pi * y + phase[0]) * np.cos(np.pi * x + phase[1])
    dy = shift[1] + 0.5 * magnitude * np.cos(2 * np.pi * x + phase[2]) * np.sin(np.pi * y + phase[3])
    return np.stack((dx, dy), axis=-1).astype(np.float32)


def deform(image: np.ndarray, displacement: np.ndarray) -> np.ndarray:
    """``image`` sampled at (j + d[..., 0], i + d[..., 1]), as the network's warp does."""
    tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
    tensor = tensor[None, None] if tensor.dim() == 2 else tensor.permute(2, 0, 1)[None]
    flow = torch.from_numpy(np.ascontiguousarray(displacement)).permute(2, 0, 1)[None]
    out = warp_image(tensor, flow)[0].numpy()
    return out[0] if image.ndim == 2 else out.transpose(1, 2, 0)


def example_pair(size: int = 256, seed: int = 0, modality: str = "CT") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(MRI, the ``modality`` phantom deformed by ``displacement``, ``displacement``): the moving image no
    longer lines up with the MRI."""
    displacement = smooth_displacement(size, magnitude=0.02 * size, seed=seed)
    return head_phantom(size, "MRI"), deform(head_phantom(size, modality), displacement), displacement
