"""The slice-wise pipeline's geometry, checked exactly with a 2-D fuser that returns a known displacement."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from volume_phantoms import CT_CONTRAST, MRI_CONTRAST, fixed_grid, grid, moving_grid, sample

from BSAFusionCore.errors import Cancelled, InputError
from BSAFusionCore.options import RefineOptions
from BSAFusionCore.prealign import prealign
from BSAFusionCore.volumes import fuse_volumes
from BSAFusionCore.volumes import pipeline as pipeline_module
from BSAFusionCore.volumes.intensity import ct_range

MODEL = SimpleNamespace(modality="CT", image_size=256, metadata={"name": "known-displacement"})
FLOW_PX = (3.0, -2.0)  # along slice columns, along slice rows


class KnownDisplacement:
    """Stands in for ``fuse_batch``: a constant displacement; fused = max(fixed, moving)."""

    def __init__(self, flow_px: tuple[float, float]) -> None:
        self.flow_px = flow_px
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __call__(self, model: object, fixed: torch.Tensor, moving: torch.Tensor, *, zero_displacement: bool = False,
                 with_warped: bool = True, refine: object = False, cancel: object = None) -> SimpleNamespace:
        self.calls.append((fixed, moving))
        self.refine = refine
        n, _, h, w = fixed.shape
        displacement = torch.empty(n, 2, h, w)
        displacement[:, 0], displacement[:, 1] = (0.0, 0.0) if zero_displacement else self.flow_px
        fused = torch.maximum(fixed, moving)
        return SimpleNamespace(fused=fused, warped=moving.clone() if with_warped else None, displacement=displacement)


@pytest.fixture
def known(monkeypatch: pytest.MonkeyPatch) -> KnownDisplacement:
    fuser = KnownDisplacement(FLOW_PX)
    monkeypatch.setattr(pipeline_module, "fuse_batch", fuser)
    return fuser


def flow_in_mm(image: sitk.Image) -> np.ndarray:
    """FLOW_PX on ``fixed_grid`` (slices through index axis 1: columns along i, rows along k)."""
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    spacing = image.GetSpacing()
    return direction[:, 0] * spacing[0] * FLOW_PX[0] + direction[:, 2] * spacing[2] * FLOW_PX[1]


def resample_through(moving: sitk.Image, displacement: sitk.Image, default: float) -> sitk.Image:
    """What a user does with the displacement output: resample the original moving volume."""
    transform = sitk.DisplacementFieldTransform(sitk.Image(displacement))
    pixel = sitk.sitkVectorFloat32 if moving.GetNumberOfComponentsPerPixel() > 1 else sitk.sitkFloat32
    return sitk.Resample(moving, displacement, transform, sitk.sitkLinear, default, pixel)


def test_known_inplane_shift_is_undone_on_the_fixed_grid(known: KnownDisplacement) -> None:
    fixed_geometry = fixed_grid()
    shift = flow_in_mm(fixed_geometry)
    fixed = sample(fixed_geometry, MRI_CONTRAST, pixel_type=sitk.sitkInt16)
    moving = sample(moving_grid(), CT_CONTRAST, shift_mm=shift, pixel_type=sitk.sitkInt16)

    result = fuse_volumes(fixed, moving, MODEL, batch_size=5, prealign="none")

    expected = sitk.GetArrayFromImage(sample(fixed_geometry, CT_CONTRAST))
    warped = sitk.GetArrayFromImage(result.warped)
    error = np.abs(warped - expected)[4:-4, 2:-2, 4:-4].mean()  # away from the moving volume's border
    unshifted = sitk.GetArrayFromImage(
        sitk.Resample(moving, fixed_geometry, sitk.Transform(), sitk.sitkLinear, -1000.0, sitk.sitkFloat32)
    )
    assert error < 0.15 * np.abs(unshifted - expected)[4:-4, 2:-2, 4:-4].mean()
    assert error < 10.0  # HU, against a 2200 HU range

    displacement = sitk.GetArrayViewFromImage(result.displacement)
    np.testing.assert_allclose(displacement[5, 6, 7], shift, atol=1e-9)
    assert result.displacement.GetPixelID() == sitk.sitkVectorFloat64
    assert result.record["options"]["axis"] == 1
    assert [fixed.shape[1:] for fixed, _ in known.calls] == [(1, 40, 48)] * 3  # 12 slices: 5 + 5 + 2


def test_fuse_only_keeps_the_slices_as_they_lie(known: KnownDisplacement) -> None:
    fixed = sample(fixed_grid(), MRI_CONTRAST)
    moving = sample(moving_grid(), CT_CONTRAST, pixel_type=sitk.sitkInt16)
    result = fuse_volumes(fixed, moving, MODEL, prealign="none", fuse_only=True)
    assert not sitk.GetArrayViewFromImage(result.displacement).any()
    assert result.record["options"]["fuse_only"] is True
    registered = fuse_volumes(fixed, moving, MODEL, prealign="none")
    assert sitk.GetArrayViewFromImage(registered.displacement).any() and not registered.record["options"]["fuse_only"]


def test_refine_reaches_every_batch_and_the_record(known: KnownDisplacement) -> None:
    fixed = sample(fixed_grid(), MRI_CONTRAST)
    moving = sample(moving_grid(), CT_CONTRAST, pixel_type=sitk.sitkInt16)
    result = fuse_volumes(fixed, moving, MODEL, prealign="none", refine=True)
    assert known.refine == RefineOptions() and result.record["options"]["refine"] is True
    assert fuse_volumes(fixed, moving, MODEL, prealign="none").record["options"]["refine"] is False
    with pytest.raises(InputError, match="exclude each other"):
        fuse_volumes(fixed, moving, MODEL, prealign="none", refine=True, fuse_only=True)


def test_displacement_applied_by_simpleitk_reproduces_warped(known: KnownDisplacement) -> None:
    fixed = sample(fixed_grid(), MRI_CONTRAST)
    moving = sample(moving_grid(), CT_CONTRAST, pixel_type=sitk.sitkInt16)
    result = fuse_volumes(fixed, moving, MODEL, ct_window="brain", prealign="none")
    again = resample_through(moving, result.displacement, result.record["warped_outside_value"])
    np.testing.assert_allclose(
        sitk.GetArrayViewFromImage(again), sitk.GetArrayViewFromImage(result.warped), atol=1e-3
    )
    assert result.warped.GetSpacing() == fixed.GetSpacing()
    assert result.warped.GetDirection() == fixed.GetDirection()
    assert float(np.max(sitk.GetArrayViewFromImage(result.warped))) > 100  # HU, not normalised


def test_rigid_prealignment_is_in_the_displacement(known: KnownDisplacement) -> None:
    fixed_geometry = fixed_grid()
    offset = np.array([4.0, -3.0, 2.0])  # the moving scan's frame is off by this much
    fixed = sample(fixed_geometry, MRI_CONTRAST)
    moving = sample(moving_grid(), CT_CONTRAST, shift_mm=offset)

    result = fuse_volumes(fixed, moving, MODEL, prealign="rigid")

    assert isinstance(result.prealignment, sitk.Euler3DTransform)
    np.testing.assert_allclose(result.prealignment.GetTranslation(), offset, atol=0.6)
    again = resample_through(moving, result.displacement, result.record["warped_outside_value"])
    np.testing.assert_allclose(
        sitk.GetArrayViewFromImage(again), sitk.GetArrayViewFromImage(result.warped), atol=1e-3
    )


def test_empty_slices_are_skipped_but_defined(known: KnownDisplacement) -> None:
    tall = grid((48, 24, 40), (1.0, 2.5, 1.2), np.asarray(fixed_grid().GetDirection()).reshape(3, 3))
    fixed = sample(tall, MRI_CONTRAST)
    moving = sample(moving_grid(), CT_CONTRAST)
    result = fuse_volumes(fixed, moving, MODEL, batch_size=24, prealign="none")
    slices = result.record["slices"]
    assert slices["total"] == 24
    assert 0 < slices["empty"] < 24
    assert known.calls[0][0].shape[0] == slices["fused"]
    empty_disp = sitk.GetArrayViewFromImage(result.displacement)[:, 0]  # the first slice is empty
    np.testing.assert_array_equal(empty_disp, 0.0)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(result.fused)[:, 0], 0.0)


def test_colour_fusion_gives_an_rgb_volume(known: KnownDisplacement) -> None:
    fixed = sample(fixed_grid(), MRI_CONTRAST)
    moving = sample(moving_grid(), MRI_CONTRAST)  # a scalar "PET"
    result = fuse_volumes(fixed, moving, MODEL, color_fusion=True, colormap="jet", prealign="none")
    assert result.fused.GetPixelID() == sitk.sitkVectorUInt8
    assert result.fused.GetNumberOfComponentsPerPixel() == 3
    assert known.calls[0][1].shape[1] == 3
    assert result.warped.GetPixelID() == sitk.sitkFloat32


def test_rgb_moving_volume_is_warped_in_colour(known: KnownDisplacement) -> None:
    fixed = sample(fixed_grid(), MRI_CONTRAST)
    grey = sample(moving_grid(), MRI_CONTRAST)
    scaled = sitk.Cast(sitk.RescaleIntensity(grey, 0, 255), sitk.sitkUInt8)
    rgb = sitk.Compose(scaled, scaled // 2, 255 - scaled)
    result = fuse_volumes(fixed, rgb, MODEL, prealign="none")
    assert result.warped.GetPixelID() == sitk.sitkVectorFloat32
    assert result.fused.GetPixelID() == sitk.sitkVectorUInt8
    again = resample_through(rgb, result.displacement, result.record["warped_outside_value"])
    np.testing.assert_allclose(
        sitk.GetArrayViewFromImage(again), sitk.GetArrayViewFromImage(result.warped), atol=1e-3
    )


def test_progress_and_cancel(known: KnownDisplacement) -> None:
    fixed = sample(fixed_grid(), MRI_CONTRAST)
    moving = sample(moving_grid(), CT_CONTRAST)
    seen: list[float] = []
    fuse_volumes(fixed, moving, MODEL, batch_size=4, progress=lambda f, _stage: seen.append(f), prealign="none")
    assert seen == sorted(seen)
    assert seen[-1] == 1.0

    cancel = threading.Event()

    def cancel_on_first_batch(fraction: float, stage: str) -> None:
        if stage == "fusing slices":
            cancel.set()

    with pytest.raises(Cancelled):
        fuse_volumes(fixed, moving, MODEL, batch_size=4, progress=cancel_on_first_batch, cancel=cancel, prealign="none")
    assert len(known.calls) == 3 + 1


def test_cancel_stops_the_prealignment(known: KnownDisplacement) -> None:
    fixed = sample(fixed_grid(), MRI_CONTRAST)
    moving = sample(moving_grid(), CT_CONTRAST)
    cancel = threading.Event()
    stages: list[str] = []

    def cancel_while_prealigning(fraction: float, stage: str) -> None:
        stages.append(stage)
        if stage.startswith("pre-aligning"):
            cancel.set()

    with pytest.raises(Cancelled):
        fuse_volumes(fixed, moving, MODEL, prealign="affine", progress=cancel_while_prealigning, cancel=cancel)
    assert stages.count("pre-aligning (rigid)") <= 2 * 3  # each of the 3 levels stops at once
    assert "pre-aligning (affine)" not in stages
    assert not known.calls


def test_inputs_are_not_modified(known: KnownDisplacement) -> None:
    fixed = sample(fixed_grid(), MRI_CONTRAST)
    moving = sample(moving_grid(), CT_CONTRAST)
    before = sitk.GetArrayFromImage(fixed), sitk.GetArrayFromImage(moving), moving.GetOrigin()
    fuse_volumes(fixed, moving, MODEL, prealign="rigid")
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(fixed), before[0])
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(moving), before[1])
    assert moving.GetOrigin() == before[2]


def _with_nan(image: sitk.Image) -> sitk.Image:
    array = sitk.GetArrayFromImage(image)
    array[1, 2, 3] = np.nan
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(image)
    return out


@pytest.mark.parametrize(
    ("make_fixed", "make_moving", "options", "message"),
    [
        (lambda f: f[:, :, 0], lambda m: m, {}, "2-D"),
        (lambda f: f, lambda m: sitk.JoinSeries([m, m]), {}, "4-D"),
        (_with_nan, lambda m: m, {}, "NaN"),
        (lambda f: f, lambda m: sitk.Compose(m, m, m, m), {}, "4 components"),
        (lambda f: f, lambda m: sitk.Image(m.GetSize(), sitk.sitkFloat32), {}, "single intensity"),
        (lambda f: f, lambda m: m, {"prealign": "elastic"}, "pre-alignment"),
        (lambda f: f, lambda m: m, {"ct_window": "lung"}, "CT window"),
        (lambda f: f, lambda m: m, {"colormap": "viridis"}, "colour map"),
        (lambda f: f, lambda m: m, {"batch_size": 0}, "batch size"),
        (lambda f: f, lambda m: m, {"axis": 5}, "slice axis"),
        (lambda f: f, lambda m: m, {"axis": 0}, "at least 32 x 32"),
        (lambda f: f, lambda m: m, {"percentiles": (99.0, 1.0)}, "percentiles"),
    ],
)
def test_bad_input_is_named(known: KnownDisplacement, make_fixed, make_moving, options, message) -> None:
    fixed = sample(fixed_grid(), MRI_CONTRAST)
    moving = sample(moving_grid(), CT_CONTRAST)
    with pytest.raises(InputError, match=message):
        fuse_volumes(make_fixed(fixed), make_moving(moving), MODEL, **options)


def test_volumes_that_do_not_overlap_are_refused(known: KnownDisplacement) -> None:
    fixed = sample(fixed_grid(), MRI_CONTRAST)
    moving = sample(moving_grid(), CT_CONTRAST)
    moving.SetOrigin((400.0, 0.0, 0.0))
    with pytest.raises(InputError, match="do not overlap"):
        fuse_volumes(fixed, moving, MODEL, prealign="none")


def test_volumes_over_the_memory_limit_are_refused(known: KnownDisplacement) -> None:
    fixed = sample(fixed_grid(), MRI_CONTRAST, pixel_type=sitk.sitkInt16)
    moving = sample(moving_grid(), CT_CONTRAST, pixel_type=sitk.sitkInt16)
    with pytest.raises(InputError, match=r"more than the limit of 0\.5 GB"):
        fuse_volumes(fixed, moving, MODEL, max_memory_gb=0.5)


def ct_values(values: list[float]) -> sitk.Image:
    return sitk.GetImageFromArray(np.asarray(values, dtype=np.float32).reshape(1, 1, -1))


def test_ct_defaults_to_a_soft_tissue_window_with_padding_as_background() -> None:
    padding, air, brain, bone = -2048.0, -1000.0, 40.0, 1200.0
    image = ct_values([padding] * 20 + [air] * 30 + [brain] * 40 + [bone] * 10)
    found, described = ct_range(image)
    np.testing.assert_allclose(found.normalise(np.array([padding, air, brain, bone])), [0.0, 0.0, 0.5, 1.0])
    assert "soft-tissue" in described and "20.0% of the voxels below -1024 HU" in described
    for window in ("percentiles", "full"):  # the padding takes no part in the range either
        found, _ = ct_range(image, window)
        assert found.low >= air and found.normalise(np.array([padding, air]))[0] == 0.0


def test_ct_not_in_hounsfield_units_is_mapped_by_percentiles(caplog: pytest.LogCaptureFixture) -> None:
    found, described = ct_range(ct_values(list(range(0, 4000, 10))))
    assert "percentiles" in described and "does not look like Hounsfield units" in caplog.text
    assert 0.0 < found.low < found.high < 4000.0


def test_default_run_pre_aligns_rigidly_and_records_the_ct_mapping(known: KnownDisplacement) -> None:
    fixed = sample(fixed_grid(), MRI_CONTRAST)
    moving = sample(moving_grid(), CT_CONTRAST)
    array = sitk.GetArrayFromImage(moving)
    array[:, :3, :] = -2048.0  # rows outside the scanner's field of view
    padded = sitk.GetImageFromArray(array)
    padded.CopyInformation(moving)
    result = fuse_volumes(fixed, padded, MODEL)
    assert result.record["options"]["prealign"] == "rigid" and isinstance(result.prealignment, sitk.Euler3DTransform)
    mapping = result.record["moving_intensity_mapping"]
    assert mapping.startswith("CT window soft-tissue") and "outside the field of view) are background" in mapping


def test_ct_windows_are_refused_for_other_modalities_and_rgb(known: KnownDisplacement) -> None:
    fixed = sample(fixed_grid(), MRI_CONTRAST)
    moving = sample(moving_grid(), CT_CONTRAST)
    pet = SimpleNamespace(modality="PET", image_size=256, metadata={})
    with pytest.raises(InputError, match="CT windows apply to a CT moving volume; these weights are for PET"):
        fuse_volumes(fixed, moving, pet, ct_window="bone", prealign="none")
    with pytest.raises(InputError, match="unknown CT window 'lung'"):
        fuse_volumes(fixed, moving, MODEL, ct_window="lung")


def test_rigid_prealignment_of_an_rgb_moving_volume() -> None:
    fixed = sample(fixed_grid(), MRI_CONTRAST)
    grey = sitk.Cast(sitk.RescaleIntensity(sample(moving_grid(), MRI_CONTRAST), 0, 255), sitk.sitkUInt8)
    transform = prealign(fixed, sitk.Compose(grey, grey, grey), "rigid")  # float64 mean of the channels failed
    assert isinstance(transform, sitk.Euler3DTransform)
