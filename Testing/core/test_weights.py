"""Model files: our format round-trips, and every bad file gets a clear error without running code."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from safetensors.torch import save_file

import BSAFusionCore as bf
from BSAFusionCore.network import BSAFusionNet
from BSAFusionCore.weights import load_network, read_weights, save_weights, tensors_sha256


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory, random_net):
    path = tmp_path_factory.mktemp("w") / "model.safetensors"
    save_weights(path, random_net, {"modality": "PET", "image_size": 64, "training": {"epochs": 3}})
    return path


def test_round_trip_keeps_metadata_and_fp16_values(weights_file, random_net):
    state, meta = read_weights(weights_file)
    assert meta["modality"] == "PET" and meta["training"] == {"epochs": 3}
    assert meta["format_version"] == 1 and meta["dtype"] == "float16"
    for name, tensor in random_net.state_dict().items():
        assert torch.equal(state[name], tensor.half()), name
    model = bf.load_model(weights_file, device="cpu")
    assert model.modality == "PET" and model.image_size == 64
    assert bf.load_model(weights_file, device="cpu") is model  # cached


def test_bundled_name_without_bundled_weights_names_the_problem(tmp_path, monkeypatch):
    monkeypatch.setenv("BSAFUSION_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(bf.WeightsError, match="no bundled weights for SPECT"):
        bf.load_model("SPECT")
    with pytest.raises(bf.WeightsError, match="does not exist"):
        bf.load_model(tmp_path / "nothing.safetensors")


def test_tampered_tensors_fail_the_checksum(weights_file, tmp_path):
    data = bytearray(weights_file.read_bytes())
    data[-3] ^= 0xFF
    bad = tmp_path / "tampered.safetensors"
    bad.write_bytes(bytes(data))
    with pytest.raises(bf.WeightsError, match="sha256"):
        read_weights(bad)


def test_truncated_file_is_reported_corrupt(weights_file, tmp_path):
    bad = tmp_path / "truncated.safetensors"
    bad.write_bytes(weights_file.read_bytes()[:5000])
    with pytest.raises(bf.WeightsError, match="corrupt"):
        bf.load_model(bad)


def test_other_files_are_refused(tmp_path):
    text = tmp_path / "notes.safetensors"
    text.write_text("hello")
    with pytest.raises(bf.WeightsError, match="neither a safetensors file nor a PyTorch checkpoint"):
        bf.load_model(text)
    other = tmp_path / "other.pkl"
    torch.save({"model": {"w": torch.zeros(2)}}, other)
    with pytest.raises(bf.WeightsError, match="not a BSAFusion checkpoint"):
        bf.load_model(other)
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(bf.WeightsError, match="without BSAFusion metadata"):
        bf.load_model(plain)


def test_wrong_shapes_are_named(random_net, tmp_path):
    checkpoint = random_net.reference_state_dict()
    checkpoint["fusion_net_state_dict"]["F1.mlp.bias"] = torch.zeros(3)
    path = tmp_path / "BSAFusion_CT.pkl"
    torch.save(checkpoint, path)
    with pytest.raises(bf.WeightsError, match=r"F1.mlp.bias has shape \(3,\)"):
        bf.load_model(path)


class _Exploit:
    def __reduce__(self):
        return (print, ("pickled code ran",))


def test_pickled_code_is_never_executed(tmp_path, capsys):
    path = tmp_path / "evil.pkl"
    with path.open("wb") as f:
        pickle.dump({"encoder_state_dict": _Exploit()}, f, protocol=2)
    with pytest.raises(bf.WeightsError, match="holds executable Python objects") as refused:
        bf.load_model(path)
    assert "pickled code ran" not in capsys.readouterr().out
    assert "weights_only=False" not in str(refused.value)  # never advise running the file's code


def test_weights_that_are_not_a_file_are_named(tmp_path):
    with pytest.raises(bf.WeightsError, match=r"neither a bundled model \(CT, PET, SPECT\) nor an existing file"):
        bf.load_model("MRI")
    with pytest.raises(bf.WeightsError, match="is a folder"):
        bf.load_model(tmp_path)
    empty = tmp_path / "empty.safetensors"
    empty.touch()
    with pytest.raises(bf.WeightsError, match=r"is empty \(0 bytes\)"):
        bf.load_model(empty)
    with pytest.raises(bf.WeightsError, match="does not exist"):
        bf.load_model(tmp_path / "missing.safetensors")


def test_authors_checkpoint_loads_directly(random_net, tmp_path):
    path = tmp_path / "BSAFusion_CT.pkl"
    torch.save(random_net.reference_state_dict(), path)
    model = bf.load_model(path, device="cpu")
    assert all(torch.equal(a, b) for a, b in zip(model.net.state_dict().values(),
                                                   random_net.state_dict().values(), strict=True))


def _other_net() -> BSAFusionNet:
    torch.manual_seed(1)
    return BSAFusionNet().eval()


def test_a_fusion_pass_of_its_own_round_trips(random_net, tmp_path):
    """The fusion pass's encoder, classifier and fusion net are stored; the registration network keeps the rest."""
    fusion = _other_net()
    path = tmp_path / "two.safetensors"
    save_weights(path, random_net, {"modality": "PET", "image_size": 64}, fusion_net=fusion)
    loaded = load_network(path)
    for name, tensor in loaded.net.state_dict().items():
        source = fusion if name.startswith("fusion_net.") else random_net
        assert torch.equal(tensor, source.state_dict()[name].half().float()), name
    for name, tensor in loaded.fusion_net.state_dict().items():
        source = random_net if name.startswith(("transfer.transfer.", "transfer.modal_dis.", "reg_net.")) else fusion
        assert torch.equal(tensor, source.state_dict()[name].half().float()), name
    plain = tmp_path / "one.safetensors"
    save_weights(plain, random_net, {"image_size": 64})
    assert load_network(plain).fusion_net is None


def test_an_incomplete_fusion_pass_is_refused(random_net, tmp_path):
    path = tmp_path / "two.safetensors"
    save_weights(path, random_net, {"image_size": 64}, fusion_net=_other_net())
    state, meta = read_weights(path)
    del state["fusion_features.encoder.rb1.mlp.weight"]
    broken = tmp_path / "broken.safetensors"
    save_file(state, str(broken), metadata={"bsafusion": json.dumps({**meta, "sha256": tensors_sha256(state)})})
    with pytest.raises(bf.WeightsError, match=r"1 tensors missing \(e.g. \['fusion_features.encoder"):
        bf.load_model(broken)
