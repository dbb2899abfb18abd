"""The 2D inference API: sizes, batches, colour, determinism, the displacement convention, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch

import BSAFusionCore as bf
from BSAFusionCore.color import rgb_to_ycbcr, ycbcr_to_rgb
from BSAFusionCore.errors import InputError
from BSAFusionCore.examples import deform, example_pair, head_phantom
from BSAFusionCore.geometry import affine_parts, compose_with_prealignment, pixel_image, pixel_points
from BSAFusionCore.inference import fuse_batch, fuse_images
from BSAFusionCore.metrics.registration import ncc
from BSAFusionCore.model import mixed_precision_agrees
from BSAFusionCore.network import BSAFusionNet, BSAFusionOutput, warp_image
from BSAFusionCore.training.trainer import zero_flow_heads


@pytest.mark.parametrize("shape", [(64, 64), (45, 70), (97, 33)])
def test_any_size_comes_back_at_input_size(small_model, shape):
    rng = np.random.default_rng(0)
    result = bf.fuse_images(rng.random(shape), rng.random(shape), small_model)
    assert result.fused.shape == shape and result.warped.shape == shape
    assert result.displacement.shape == (*shape, 2)
    assert np.isfinite(result.displacement).all()
    assert result.fused.min() >= 0 and result.fused.max() <= 1


def test_a_slice_gives_the_same_result_alone_and_in_a_batch(small_model):
    torch.manual_seed(3)
    fixed, moving = torch.rand(4, 1, 80, 72), torch.rand(4, 1, 80, 72)
    batch = bf.fuse_batch(small_model, fixed, moving)
    alone = bf.fuse_batch(small_model, fixed[2:3], moving[2:3])
    assert torch.allclose(batch.fused[2:3], alone.fused, atol=1e-5)
    assert torch.allclose(batch.displacement[2:3], alone.displacement, atol=1e-4)


def test_results_are_deterministic(small_model):
    mri, ct, _ = example_pair(64)
    first, second = bf.fuse_images(mri, ct, small_model), bf.fuse_images(mri, ct, small_model)
    assert np.array_equal(first.fused, second.fused)
    assert np.array_equal(first.displacement, second.displacement)


def test_colour_moving_image_goes_through_ycbcr(small_model):
    rng = np.random.default_rng(1)
    mri = rng.random((64, 64)).astype(np.float32)
    pet = rng.random((64, 64, 3)).astype(np.float32)
    result = bf.fuse_images(mri, pet, small_model)
    assert result.fused.shape == (64, 64, 3) and result.warped.shape == (64, 64, 3)
    # The network saw the Y channel: its flow equals that of the grayscale Y image.
    luma = rgb_to_ycbcr(torch.from_numpy(pet).permute(2, 0, 1)[None])[0, 0].numpy()
    gray = bf.fuse_images(mri, luma, small_model)
    np.testing.assert_allclose(result.displacement, gray.displacement, atol=1e-5)
    # Fused colour = the published recombination of the fused Y with the PET's warped chroma.
    chroma = rgb_to_ycbcr(torch.from_numpy(result.warped).permute(2, 0, 1)[None])[:, 1:]
    expected = ycbcr_to_rgb(torch.cat((torch.from_numpy(gray.fused)[None, None], chroma), dim=1)).clamp(0, 1)
    np.testing.assert_allclose(result.fused, expected[0].permute(1, 2, 0).numpy(), atol=1e-5)


def test_ycbcr_uses_the_published_coefficients():
    white = torch.ones(1, 3, 1, 1)
    np.testing.assert_allclose(rgb_to_ycbcr(white).flatten().numpy(), [0.9815, 0.5, 0.5], atol=1e-6)
    grey = torch.full((1, 3, 1, 1), 0.5)
    assert torch.allclose(ycbcr_to_rgb(rgb_to_ycbcr(grey)), torch.full((1, 3, 1, 1), 1.164 * 0.919 * 0.5), atol=1e-6)

def _known_flow_engine(monkeypatch, model, flow_fn):
    """Replace the network by one that returns a known flow, to test the convention around it."""

    def forward(fixed, moving, with_discriminator=True, with_fusion=True):
        flow = flow_fn(fixed)
        zero = torch.zeros_like(fixed)
        return BSAFusionOutput(flow=flow, fused=fixed, warped_moving=zero, flow_fixed_side=zero, flow_moving_side=zero)

    monkeypatch.setattr(model.engine, "forward", forward)

def test_translation_gives_a_constant_displacement_of_the_right_sign(monkeypatch, random_net):
    model = bf.model_from_network(random_net, "cpu", {"image_size": 64})
    shift_x, shift_y = 3.0, -2.0  # in working pixels (64 px); the input is 128 px
    _known_flow_engine(monkeypatch, model, lambda f: torch.tensor([shift_x, shift_y]).view(1, 2, 1, 1).expand(
        f.shape[0], 2, *f.shape[-2:]).clone())
    mri = head_phantom(128, "MRI")
    # Moving image = the MRI moved 6 px right and 4 px up: aligning samples at (j + 6, i - 4).
    moved = np.roll(np.roll(mri, 6, axis=1), -4, axis=0)
    result = bf.fuse_images(mri, moved, model)
    np.testing.assert_allclose(result.displacement[..., 0], 6.0, atol=1e-4)
    np.testing.assert_allclose(result.displacement[..., 1], -4.0, atol=1e-4)
    interior = (slice(10, -10), slice(10, -10))
    np.testing.assert_allclose(result.warped[interior], mri[interior], atol=1e-5)

def test_warp_follows_the_documented_convention():
    image = torch.arange(20.0).view(1, 1, 4, 5)
    flow = torch.zeros(1, 2, 4, 5)
    flow[:, 0], flow[:, 1] = 1.0, 2.0  # sample (j + 1, i + 2)
    warped = bf.network.warp_image(image, flow)
    assert torch.equal(warped[0, 0, :2, :4], image[0, 0, 2:, 1:])
    half = bf.network.warp_image(image, torch.full((1, 2, 4, 5), 0.5))
    assert torch.allclose(half[0, 0, 0, 0], (image[0, 0, 0, 0] + image[0, 0, 1, 0] + image[0, 0, 0, 1]
                                              + image[0, 0, 1, 1]) / 4)

def test_resize_flow_keeps_the_physical_displacement():
    flow = torch.zeros(1, 2, 64, 64)
    flow[:, 0], flow[:, 1] = 2.0, -1.0
    out = bf.network.resize_flow(flow, (128, 32))
    assert torch.allclose(out[:, 0], torch.full((1, 128, 32), 1.0))
    assert torch.allclose(out[:, 1], torch.full((1, 128, 32), -2.0))

def test_compose_flows_weights_levels_by_their_scale():
    from BSAFusionCore.network.registration import compose_flows

    levels = [torch.full((1, 2, 2**k, 2**k), 1.0) for k in range(1, 6)]
    assert torch.allclose(compose_flows(levels, (32, 32)), torch.full((1, 2, 32, 32), 31.0))

def test_example_deformation_is_the_documented_warp():
    _, ct, displacement = example_pair(64)
    assert np.array_equal(ct, deform(head_phantom(64, "CT"), displacement))
    assert 0.3 < np.abs(displacement).mean() < 3
    _, pet, same = example_pair(64, modality="PET")
    assert np.array_equal(same, displacement) and np.array_equal(pet, deform(head_phantom(64, "PET"), displacement))


def test_the_phantom_has_each_modalitys_contrast():
    """Down the middle column at 128 px: skull (row 120), grey matter (row 108), white matter (row 83)."""
    image = {m: head_phantom(128, m) for m in ("MRI", "CT", "PET", "SPECT")}
    skull, grey, white = 120, 108, 83
    assert image["CT"][skull, 64] > 0.9 and image["MRI"][skull, 64] < 0.3  # bone: bright in CT, dark in MRI
    assert image["MRI"][white, 64] > image["MRI"][grey, 64]  # T1: white matter brighter than grey
    assert np.abs(np.diff(image["CT"], axis=0)).max() > 0.5  # sharp edges
    for nuclear in ("PET", "SPECT"):
        column = image[nuclear][:, 64]
        assert column[grey] > column[white] + 0.2 and column[skull] < column[grey] - 0.3  # uptake in the cortex
        assert np.abs(np.diff(image[nuclear], axis=0)).max() < 0.3  # blurred: no sharp edges (CT 1.0, MRI 0.75)


def _turned(image: np.ndarray, degrees: float, shift: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """``image`` moved rigidly about its centre, and the true displacement (H, W, 2) that undoes it."""
    size = image.shape[0]
    transform = sitk.Euler2DTransform()
    transform.SetCenter(((size - 1) / 2, (size - 1) / 2))
    transform.SetAngle(np.deg2rad(degrees))
    transform.SetTranslation(shift)
    moved = sitk.Resample(pixel_image(image), pixel_image(image), transform, sitk.sitkLinear, 0.0)
    points = pixel_points(size, size)
    truth = compose_with_prealignment(np.zeros_like(points), points, transform.GetInverse())
    return sitk.GetArrayFromImage(moved), truth


def test_rigid_prealignment_undoes_a_rigid_misalignment_in_the_displacement_and_the_warp(small_model):
    ct = head_phantom(128, "CT")
    moved, truth = _turned(ct, 6.0, (4.0, 2.5))  # 6.6 px on average
    result = bf.fuse_images(ct, moved, small_model, prealign="rigid", zero_displacement=True)
    assert result.prealignment.GetName() == "Euler2DTransform"
    assert np.linalg.norm(result.displacement - truth, axis=2).mean() < 0.1 * np.linalg.norm(truth, axis=2).mean()
    ideal = warp_image(torch.from_numpy(moved)[None, None], torch.from_numpy(truth.transpose(2, 0, 1)).float()[None])
    assert ncc(result.warped, ct) > ncc(ideal[0, 0].numpy(), ct) - 0.002  # as good as the true field allows
    assert ncc(moved, ct) < 0.6
    plain = bf.fuse_images(ct, moved, small_model, zero_displacement=True)  # the default for 2D: none
    assert plain.prealignment is None and not plain.displacement.any()


def test_the_prealignment_is_composed_with_the_network_displacement(monkeypatch, random_net):
    model = bf.model_from_network(random_net, "cpu", {"image_size": 64})
    _known_flow_engine(monkeypatch, model, lambda f: torch.tensor([2.0, -1.0]).view(1, 2, 1, 1).expand(
        f.shape[0], 2, *f.shape[-2:]).clone())  # 4 and -2 px at the input's 128 px
    ct = head_phantom(128, "CT")
    moved, _ = _turned(ct, 5.0, (3.0, -2.0))
    result = bf.fuse_images(ct, moved, model, prealign="rigid")
    a, b = affine_parts(result.prealignment)
    points = pixel_points(128, 128)
    np.testing.assert_allclose(result.displacement, (points + np.array([4.0, -2.0])) @ a.T + b - points, atol=1e-4)


def test_an_unknown_prealignment_is_named(small_model):
    mri, ct, _ = example_pair(64)
    with pytest.raises(InputError, match="unknown pre-alignment 'elastic'"):
        bf.fuse_images(mri, ct, small_model, prealign="elastic")


def test_zero_displacement_fuses_without_moving(small_model):
    mri, ct, _ = example_pair(64)
    result = bf.fuse_images(mri, ct, small_model, zero_displacement=True)
    assert not result.displacement.any()
    np.testing.assert_allclose(result.warped, ct, atol=1e-6)

def test_weights_that_do_not_register_skip_the_registration_net_with_the_same_result():
    torch.manual_seed(1)
    net = BSAFusionNet().eval()
    zero_flow_heads(net)  # what a never-trained, frozen registration net is
    mri, ct, _ = example_pair(64)
    full = bf.fuse_images(mri, ct, bf.model_from_network(net, "cpu", {"image_size": 64}))
    calls = []
    fusion_only = bf.model_from_network(net, "cpu", {"image_size": 64, "registers": False})
    fusion_only.engine.reg_net.register_forward_hook(lambda *args: calls.append(args))
    fast = bf.fuse_images(mri, ct, fusion_only)
    assert not calls
    assert not full.displacement.any() and not fast.displacement.any()
    np.testing.assert_allclose(fast.fused, full.fused, atol=1e-6)
    np.testing.assert_allclose(fast.warped, full.warped, atol=1e-6)  # a zero-flow warp rounds a little
    np.testing.assert_array_equal(fast.warped, ct)  # unregistered: the moving image as given, not resampled


def test_a_registration_size_of_its_own_registers_there_and_fuses_the_warped_pair(random_net):
    """Weights that record ``registration_size``: the displacement of the network at that size, the
    fused image of the fusion (zero flow) at ``image_size`` on the fixed and the warped moving image."""
    mri, ct, _ = example_pair(64)
    fixed, moving = torch.from_numpy(mri)[None, None], torch.from_numpy(ct)[None, None]
    two_pass = bf.model_from_network(random_net, "cpu", {"image_size": 64, "registration_size": 32})
    calls = []
    hook = two_pass.engine.reg_net.register_forward_hook(lambda module, args, out: calls.append(args[0].shape))
    out = fuse_batch(two_pass, fixed, moving)
    hook.remove()
    assert [shape[-1] for shape in calls] == [32 // 16]  # one registration, on the 32 px pair's tokens
    small = fuse_batch(bf.model_from_network(random_net, "cpu", {"image_size": 32}), fixed, moving)
    assert out.displacement.abs().max() > 0.1
    torch.testing.assert_close(out.displacement, small.displacement)
    torch.testing.assert_close(out.warped, small.warped)
    aligned = fuse_batch(bf.model_from_network(random_net, "cpu", {"image_size": 64}), fixed, out.warped,
                         zero_displacement=True)
    torch.testing.assert_close(out.fused, aligned.fused)


def test_a_fusion_pass_of_its_own_fuses_what_the_network_registered(random_net):
    """Weights with their own fusion network: the displacement of the network, then the fusion network's
    fusion (zero flow) of the fixed and the warped moving image, also at one size; fuse only: that fusion alone."""
    mri, ct, _ = example_pair(64)
    fixed, moving = torch.from_numpy(mri)[None, None], torch.from_numpy(ct)[None, None]
    torch.manual_seed(1)
    fusion = BSAFusionNet().eval()
    model = bf.FusionModel(random_net, torch.device("cpu"), {"image_size": 64}, fusion_net=fusion)
    assert model.two_passes
    out = fuse_batch(model, fixed, moving)
    alone = fuse_batch(bf.model_from_network(random_net, "cpu", {"image_size": 64}), fixed, moving)
    torch.testing.assert_close(out.displacement, alone.displacement)
    fuser = bf.model_from_network(fusion, "cpu", {"image_size": 64})
    torch.testing.assert_close(out.fused, fuse_batch(fuser, fixed, out.warped, zero_displacement=True).fused)
    assert not torch.allclose(out.fused, alone.fused, atol=1e-3)
    torch.testing.assert_close(fuse_batch(model, fixed, moving, zero_displacement=True).fused,
                               fuse_batch(fuser, fixed, moving, zero_displacement=True).fused)
    assert mixed_precision_agrees(model, "fp32", fused_tolerance=0, displacement_tolerance=0)


@pytest.mark.parametrize("metadata", [{"image_size": 50}, {"registration_size": 8}, {"image_size": "256"}])
def test_damaged_working_sizes_are_named(random_net, metadata):
    with pytest.raises(bf.WeightsError, match="not a working size"):
        bf.model_from_network(random_net, "cpu", metadata)


@pytest.mark.parametrize("registration_size", [None, 32])
def test_mixed_precision_check_rejects_a_precision_that_changes_results(random_net, registration_size):
    # Random weights are chaotic: bf16 moves them far from fp32, and the check must say so.
    model = bf.model_from_network(random_net, "cpu", {"image_size": 64, "registration_size": registration_size})
    assert not mixed_precision_agrees(model, "bf16", fused_tolerance=1e-6, displacement_tolerance=1e-6)
    assert mixed_precision_agrees(model, "fp32", fused_tolerance=0, displacement_tolerance=0)

GOOD = np.zeros((40, 40), np.float32)

@pytest.mark.parametrize(
    ("fixed", "moving", "message"),
    [
        (np.zeros((40, 40, 3)), GOOD, "2D"),
        (GOOD, np.zeros((40, 40, 4)), "RGB"),
        (GOOD, np.zeros((40, 41)), "differ"),
        (np.zeros((31, 40)), np.zeros((31, 40)), "at least 32"),
        (np.full((40, 40), np.nan), GOOD, "NaN"),
        (GOOD, np.full((40, 40), np.inf), "NaN or infinite"),
        (np.full((40, 40), 1.5), GOOD, r"\[0, 1\]"),
        (GOOD, np.full((40, 40), -0.1), r"\[0, 1\]"),
    ],
)
def test_bad_input_is_named(small_model, fixed, moving, message):
    with pytest.raises(bf.InputError, match=message):
        bf.fuse_images(fixed, moving, small_model)

def test_batch_api_checks_channels(small_model):
    with pytest.raises(bf.InputError, match="fixed must be"):
        bf.fuse_batch(small_model, torch.zeros(1, 3, 40, 40), torch.zeros(1, 1, 40, 40))
    with pytest.raises(bf.InputError, match="floating-point"):
        bf.fuse_batch(small_model, torch.zeros(1, 1, 40, 40, dtype=torch.uint8), torch.zeros(1, 1, 40, 40))

def test_unknown_device_is_refused():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(bf.InputError, match="no CUDA"):
        bf.resolve_device("cuda")


def test_devices_that_do_not_exist_are_named() -> None:
    from BSAFusionCore.model import resolve_device

    with pytest.raises(InputError, match="unknown device 'banana': use auto, cpu, cuda"):
        resolve_device("banana")
    if not torch.backends.mps.is_available():
        with pytest.raises(InputError, match=r"MPS .* is not available"):
            resolve_device("mps")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA GPU"):
            resolve_device("cuda:0")
    with pytest.raises(InputError, match="not supported"):
        resolve_device("meta")
    assert resolve_device("cpu") == torch.device("cpu")


def test_models_are_given_as_objects_names_or_paths(small_model, tmp_path) -> None:
    from BSAFusionCore.model import as_model
    from BSAFusionCore.weights import save_weights

    path = tmp_path / "w.safetensors"
    save_weights(path, small_model.net, {"image_size": 64}, dtype=torch.float32)
    mri, ct, _ = example_pair(64)
    by_object = fuse_images(mri, ct, small_model).fused
    assert np.allclose(fuse_images(mri, ct, str(path)).fused, by_object, atol=1e-5)
    assert as_model(path, device="cpu").source == str(path)
    with pytest.raises(InputError, match="model must be a FusionModel"):
        as_model(3)


def test_batches_must_be_tensors_of_a_usable_size(small_model) -> None:
    mri, ct, _ = example_pair(64)
    with pytest.raises(InputError, match=r"must be a torch tensor .* use fuse_images"):
        fuse_batch(small_model, mri[None, None], ct[None, None])
    with pytest.raises(InputError, match="at least 32x32 pixels; fixed is 1x1"):
        fuse_images(np.zeros((1, 1), np.float32), ct, small_model)


def test_constant_images_are_refused_as_volumes_are(small_model) -> None:
    mri, ct, _ = example_pair(64)
    with pytest.raises(InputError, match="the moving image has a single intensity value"):
        fuse_images(mri, np.full_like(ct, 0.5), small_model)


def test_fuse_images_refuses_pairs_over_the_memory_limit(small_model) -> None:
    mri, ct, _ = example_pair(64)
    with pytest.raises(InputError, match=r"fusing a 64 x 64 pair would need about 1\.0 GB"):
        fuse_images(mri, ct, small_model, max_memory_gb=0.5)
    assert fuse_images(mri, ct, small_model, max_memory_gb=None).fused.shape == (64, 64)


def test_without_the_warped_image_the_rest_is_the_same(small_model):
    torch.manual_seed(1)
    fixed, moving = torch.rand(2, 1, 48, 48), torch.rand(2, 1, 48, 48)
    full = fuse_batch(small_model, fixed, moving)
    lean = fuse_batch(small_model, fixed, moving, with_warped=False)
    assert lean.warped is None and full.warped is not None
    assert torch.equal(lean.fused, full.fused) and torch.equal(lean.displacement, full.displacement)
