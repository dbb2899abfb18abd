"""The network and our inference engine reproduce the published implementation (fixture)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from BSAFusionCore.network import BSAFusionNet
from BSAFusionCore.network.folded import fold_for_inference
from BSAFusionCore.network.registration import LEVELS
from BSAFusionCore.weights import import_reference, load_network

TOLERANCE = 1e-4
COMPOSED = ("flow", "flow_fixed_side", "flow_moving_side")
COMPOSITION_GAIN = sum(2 ** (LEVELS - i) for i in range(1, LEVELS + 1))
"""The composed displacements (px) are sum_i 2^(5-i) * (level-i flow), so the level flows' float32
rounding reaches them up to 31-fold: they are held to 31 x 1e-4 px, the level flows themselves to 1e-4.
(Measured on an AVX2 CPU: level flows within 7.5e-6, composed flow 1.2e-4 px.)"""


def _arrays(out) -> dict[str, np.ndarray]:
    arrays = {name: value.numpy() for name, value in vars(out).items() if isinstance(value, torch.Tensor)}
    for side in ("fixed", "moving"):
        for level, flow in enumerate(getattr(out, f"flow_levels_{side}"), start=1):
            arrays[f"flow_level{level}_{side}_side"] = flow.numpy()
    return arrays


def _inside(flow: np.ndarray) -> np.ndarray:
    """Pixels whose sample point (j + u, i + v) lies inside the image."""
    _, _, h, w = flow.shape
    i, j = np.mgrid[0:h, 0:w]
    x, y = j + flow[:, 0], i + flow[:, 1]
    return ((x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1))[:, None]


def _check_all(out, expected) -> None:
    arrays = _arrays(out)
    names = [n for n in expected.files if n not in ("fixed", "moving")]
    for name in names:
        got, want = arrays[name], expected[name]
        assert got.shape == want.shape, name
        if name == "warped_moving":
            mask = np.broadcast_to(_inside(expected["flow"]), want.shape)
            got, want = got[mask], want[mask]
        error = float(np.abs(got - want).max())
        bound = TOLERANCE * (COMPOSITION_GAIN if name in COMPOSED else 1)
        assert error <= bound, f"{name}: max |error| {error:.2e} > {bound:.1e}"


@pytest.fixture(scope="module")
def fixture_data(reference_fixture: Path):
    expected = np.load(reference_fixture / "expected.npz")
    net = load_network(reference_fixture / "reference_checkpoint.pkl").net
    return net, expected


def _run(net, expected, **kwargs):
    with torch.inference_mode():
        return net(torch.from_numpy(expected["fixed"]), torch.from_numpy(expected["moving"]), **kwargs)


def test_published_form_matches_every_fixture_array(fixture_data):
    net, expected = fixture_data
    _check_all(_run(net, expected), expected)


ENGINE_IMAGE_TOLERANCE = 1e-3
ENGINE_FLOW_TOLERANCE_PX = 1e-2


@pytest.mark.parametrize(("threads", "batch"), [(1, 1), (2, 1), (1, 16), (2, 16)])
def test_inference_engine_stays_within_its_bound(fixture_data, threads, batch):
    """The engine users run: images within 1e-3 and the displacement within 1e-2 px of the published
    outputs (warped: where the sample point is inside the image), at 1 and 2 threads, batch 1 and 16."""
    net, expected = fixture_data
    engine = fold_for_inference(net)
    repeat = -(-batch // expected["fixed"].shape[0])
    fixed = torch.from_numpy(expected["fixed"]).repeat(repeat, 1, 1, 1)[:batch]
    moving = torch.from_numpy(expected["moving"]).repeat(repeat, 1, 1, 1)[:batch]
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            out = engine(fixed, moving, with_discriminator=False)
    finally:
        torch.set_num_threads(previous)
    want = {name: np.concatenate([expected[name]] * repeat)[:batch] for name in ("fused", "warped_moving", "flow")}
    inside = np.broadcast_to(_inside(want["flow"]), want["warped_moving"].shape)
    assert np.abs(out.fused.numpy() - want["fused"]).max() <= ENGINE_IMAGE_TOLERANCE
    assert np.abs(out.warped_moving.numpy() - want["warped_moving"])[inside].max() <= ENGINE_IMAGE_TOLERANCE
    assert np.abs(out.flow.numpy() - want["flow"]).max() <= ENGINE_FLOW_TOLERANCE_PX


def test_imported_safetensors_hold_the_same_weights(fixture_data, reference_fixture, tmp_path):
    net, _ = fixture_data
    meta = import_reference(reference_fixture / "reference_checkpoint.pkl", tmp_path / "w.safetensors",
                            modality="CT")
    assert meta["modality"] == "CT" and len(meta["sha256"]) == 64
    again, loaded_meta, _ = load_network(tmp_path / "w.safetensors")
    assert loaded_meta["sha256"] == meta["sha256"]
    for name, tensor in net.state_dict().items():
        assert torch.equal(tensor, again.state_dict()[name]), name


def test_reference_layout_round_trips():
    torch.manual_seed(1)
    net = BSAFusionNet()
    other = BSAFusionNet()
    other.load_reference_state_dict(net.reference_state_dict())
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), other.state_dict().values(), strict=True))
