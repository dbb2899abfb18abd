"""Reading 2D image files: the unusual kinds users bring."""

from __future__ import annotations

import numpy as np
import pytest

from BSAFusionCore.errors import InputError
from BSAFusionCore.images import read_image


def test_grey_plus_alpha_png_reads_as_its_grey_channel(tmp_path) -> None:
    image_module = pytest.importorskip("PIL.Image")
    grey = (np.arange(40 * 40) % 256).astype(np.uint8).reshape(40, 40)
    path = tmp_path / "la.png"
    image_module.fromarray(np.stack([grey, np.full_like(grey, 128)], axis=-1), "LA").save(path)
    read = read_image(path)
    assert read.shape == (40, 40)
    assert np.allclose(read, grey / 255.0)


def test_grey_plus_alpha_without_pillow_says_what_to_do(tmp_path, monkeypatch) -> None:
    image_module = pytest.importorskip("PIL.Image")
    path = tmp_path / "la.png"
    image_module.fromarray(np.zeros((40, 40, 2), np.uint8), "LA").save(path)
    monkeypatch.setitem(__import__("sys").modules, "PIL", None)
    with pytest.raises(InputError, match="grey \\+ alpha image, which SimpleITK cannot read"):
        read_image(path)


def test_an_empty_file_is_named_empty(tmp_path) -> None:
    path = tmp_path / "empty.png"
    path.touch()
    with pytest.raises(InputError, match=r"is empty \(0 bytes\)"):
        read_image(path)
