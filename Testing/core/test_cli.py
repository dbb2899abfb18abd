"""The ``bsafusion`` command: fuse, import-reference, demo and benchmark-speed."""

from __future__ import annotations

import json
import os
import signal
import sys

import numpy as np
import pytest
import torch

from BSAFusionCore.cli import main
from BSAFusionCore.examples import example_pair
from BSAFusionCore.images import read_image, write_image
from BSAFusionCore.inference import fuse_images
from BSAFusionCore.weights import read_weights, save_weights


@pytest.fixture(scope="module")
def weights(tmp_path_factory, random_net):
    path = tmp_path_factory.mktemp("cli") / "small.safetensors"
    save_weights(path, random_net, {"modality": "CT", "image_size": 64})
    return path


def test_fuse_writes_every_output(tmp_path, weights):
    mri, ct, _ = example_pair(80)
    write_image(tmp_path / "mri.png", mri)
    write_image(tmp_path / "ct.png", ct)
    out = tmp_path / "out"
    code = main(["fuse", "--fixed", str(tmp_path / "mri.png"), "--moving", str(tmp_path / "ct.png"),
                 "--weights", str(weights), "--output-dir", str(out), "--device", "cpu"])
    assert code == 0
    expected = fuse_images(read_image(tmp_path / "mri.png"), read_image(tmp_path / "ct.png"), str(weights))
    np.testing.assert_allclose(read_image(out / "fused.png"), expected.fused, atol=0.5 / 255 + 1e-6)  # 8-bit PNG
    np.testing.assert_allclose(read_image(out / "warped.png"), expected.warped, atol=0.5 / 255 + 1e-6)
    displacement = np.load(out / "displacement.npy")
    assert displacement.dtype == np.float32 and np.array_equal(displacement, expected.displacement)
    record = json.loads((out / "fusion.json").read_text())
    assert record["weights"] == str(weights) and record["model"]["image_size"] == 64
    assert not list(out.glob(".*"))  # no temporary files left behind


def test_fuse_reports_a_missing_input(tmp_path, weights, caplog):
    code = main(["fuse", "--fixed", str(tmp_path / "no.png"), "--moving", str(tmp_path / "no.png"),
                 "--weights", str(weights), "--output-dir", str(tmp_path / "out")])
    assert code == 2
    assert "does not exist" in caplog.text
    assert not (tmp_path / "out").exists()


@pytest.fixture()
def pair_files(tmp_path):
    mri, ct, _ = example_pair(64)
    write_image(tmp_path / "mri.png", mri)
    write_image(tmp_path / "ct.png", ct)
    return ["--fixed", str(tmp_path / "mri.png"), "--moving", str(tmp_path / "ct.png")]


def test_output_folder_is_a_transaction(tmp_path, weights, pair_files, caplog, monkeypatch):
    fuse = ["fuse", *pair_files, "--weights", str(weights), "--device", "cpu", "--output-dir"]
    (tmp_path / "a-file").write_text("x")
    assert main([*fuse, str(tmp_path / "a-file" / "out")]) == 2
    assert "a-file is a file, not a folder" in caplog.text
    assert main([*fuse, str(tmp_path / "a-file")]) == 2
    assert "is an existing file; choose a folder" in caplog.text

    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "prealignment.tfm").write_text("an earlier run's file")
    assert main([*fuse, str(earlier)]) == 2
    assert "already holds files" in caplog.text and "--overwrite" in caplog.text
    assert main([*fuse, str(earlier), "--overwrite"]) == 0
    assert sorted(p.name for p in earlier.iterdir()) == ["displacement.npy", "fused.png", "fusion.json", "warped.png"]

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("BSAFusionCore.cli.fuse.fuse_images", interrupted)
    assert main([*fuse, str(tmp_path / "new" / "deeper")]) == 130
    assert not (tmp_path / "new").exists()  # nothing half-written, no empty folders
    assert main([*fuse, str(earlier), "--overwrite"]) == 130
    assert len(list(earlier.iterdir())) == 4  # the earlier results are intact
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_2d_pairs_take_a_prealignment_and_record_it(tmp_path, weights, pair_files):
    out = tmp_path / "out"
    assert main(["fuse", *pair_files, "--weights", str(weights), "--output-dir", str(out), "--prealign", "rigid"]) == 0
    record = json.loads((out / "fusion.json").read_text())
    assert record["prealignment"]["type"] == "Euler2DTransform" and len(record["prealignment"]["parameters"]) == 3
    assert main(["fuse", *pair_files, "--weights", str(weights), "--output-dir", str(tmp_path / "plain")]) == 0
    assert json.loads((tmp_path / "plain" / "fusion.json").read_text())["prealignment"] is None  # 2D default: none


def test_2d_pairs_can_be_fused_without_registering(tmp_path, weights, pair_files):
    out = tmp_path / "out"
    assert main(["fuse", *pair_files, "--weights", str(weights), "--output-dir", str(out), "--fuse-only"]) == 0
    assert not np.load(out / "displacement.npy").any()  # random weights move everything otherwise
    assert json.loads((out / "fusion.json").read_text())["fuse_only"] is True


def test_2d_pairs_can_be_refined_and_say_so(tmp_path, weights, pair_files):
    out = tmp_path / "out"
    assert main(["fuse", *pair_files, "--weights", str(weights), "--output-dir", str(out), "--refine"]) == 0
    assert json.loads((out / "fusion.json").read_text())["refine"] is True
    both = ["fuse", *pair_files, "--weights", str(weights), "--output-dir", str(tmp_path / "no"), "--refine",
            "--fuse-only"]
    assert main(both) != 0 and not (tmp_path / "no").exists()


@pytest.mark.parametrize("option", [["--ct-window", "bone"], ["--color-fusion"],
                                    ["--percentiles", "1", "99"], ["--axis", "0"]])
def test_volume_options_are_refused_for_2d_images(tmp_path, weights, pair_files, caplog, option):
    out = tmp_path / "out"
    assert main(["fuse", *pair_files, "--weights", str(weights), "--output-dir", str(out), *option]) == 2
    assert f"{option[0]}" in caplog.text and "do not apply to 2D images" in caplog.text
    assert not out.exists()


def test_import_reference_converts_an_authors_checkpoint(tmp_path, random_net):
    source = tmp_path / "BSAFusion_SPECT.pkl"
    torch.save(random_net.reference_state_dict(), source)
    assert main(["import-reference", str(source), str(tmp_path / "spect.safetensors")]) == 0
    state, meta = read_weights(tmp_path / "spect.safetensors")
    assert meta["modality"] == "SPECT" and meta["dtype"] == "float32"
    assert torch.equal(state["fusion_net.F1.mlp.weight"], random_net.state_dict()["fusion_net.F1.mlp.weight"])

PANEL_WIDTH = 260  # labelled_panels: 2.6 inches at 100 dpi


def test_demo_runs_on_built_in_data(tmp_path, monkeypatch):
    monkeypatch.setenv("BSAFUSION_WEIGHTS_DIR", str(tmp_path / "none"))
    assert main(["demo", "--output-dir", str(tmp_path), "--size", "64", "--device", "cpu"]) == 0
    assert read_image(tmp_path / "overview.png").shape[1] == 4 * PANEL_WIDTH  # 4 labelled panels
    record = json.loads((tmp_path / "demo.json").read_text())
    assert "UNTRAINED" in record["weights"]
    assert 0 < record["moving_vs_aligned_before"]["NCC"] < 1 and record["modality"] == "CT"
    assert (tmp_path / "ct_unaligned.png").is_file()


def test_demo_refined_with_the_shipped_ct_weights_registers_the_example(tmp_path, monkeypatch):
    monkeypatch.delenv("BSAFUSION_WEIGHTS_DIR", raising=False)
    assert main(["demo", "--output-dir", str(tmp_path), "--size", "128", "--device", "cpu", "--refine"]) == 0
    record = json.loads((tmp_path / "demo.json").read_text())
    assert record["refine"] is True and "refinement" in record["weights"]
    before, after = record["moving_vs_aligned_before"]["NCC"], record["moving_vs_aligned_after"]["NCC"]
    assert after > before + 0.02  # measured: 0.943 -> 0.982 (the network alone: 0.942)


@pytest.mark.parametrize("modality", ["PET", "SPECT"])
def test_demo_refined_registers_the_pet_and_spect_examples(tmp_path, monkeypatch, modality):
    monkeypatch.delenv("BSAFUSION_WEIGHTS_DIR", raising=False)
    assert main(["demo", "--modality", modality, "--output-dir", str(tmp_path), "--size", "128", "--device", "cpu",
                 "--refine"]) == 0
    record = json.loads((tmp_path / "demo.json").read_text())
    before, after = record["moving_vs_aligned_before"]["SSIM"], record["moving_vs_aligned_after"]["SSIM"]
    assert after > before + 0.01  # measured: PET 0.968 -> 0.994, SPECT 0.976 -> 0.992 (the mapped similarity)


def test_demo_with_fusion_only_weights_fuses_the_aligned_example(tmp_path, monkeypatch, random_net, caplog):
    save_weights(tmp_path / "w" / "BSAFusion_CT.safetensors", random_net,
                 {"modality": "CT", "image_size": 64, "registers": False})
    monkeypatch.setenv("BSAFUSION_WEIGHTS_DIR", str(tmp_path / "w"))
    assert main(["demo", "--output-dir", str(tmp_path / "out"), "--size", "64", "--device", "cpu"]) == 0
    assert read_image(tmp_path / "out" / "overview.png").shape[1] == 3 * PANEL_WIDTH  # MRI | CT | fused
    record = json.loads((tmp_path / "out" / "demo.json").read_text())
    assert "registration not trained" in record["weights"]
    assert record["moving_vs_aligned_before"]["NCC"] == pytest.approx(1.0)
    assert "do not register" in caplog.text


def test_demo_of_another_modality_uses_its_phantom_and_weights(tmp_path, monkeypatch, random_net):
    save_weights(tmp_path / "w" / "BSAFusion_SPECT.safetensors", random_net, {"modality": "SPECT", "image_size": 64})
    monkeypatch.setenv("BSAFUSION_WEIGHTS_DIR", str(tmp_path / "w"))
    out = tmp_path / "out"
    assert main(["demo", "--modality", "spect", "--output-dir", str(out), "--size", "64", "--device", "cpu"]) == 0
    record = json.loads((out / "demo.json").read_text())
    assert record["modality"] == "SPECT" and record["weights"] == "shipped SPECT weights"
    np.testing.assert_allclose(read_image(out / "spect_unaligned.png"), example_pair(64, 0, "SPECT")[1], atol=1 / 255)


def test_demo_overview_without_matplotlib_is_unlabelled(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("BSAFUSION_WEIGHTS_DIR", str(tmp_path / "none"))
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails
    assert main(["demo", "--output-dir", str(tmp_path), "--size", "64", "--device", "cpu"]) == 0
    assert read_image(tmp_path / "overview.png").shape[:2] == (64, 256)
    assert "has no labels" in caplog.text


def test_benchmark_speed_prints_a_row_per_batch(capsys):
    assert main(["benchmark-speed", "--size", "32", "--batch-sizes", "1", "2", "--repeats", "1"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.strip()[:1].isdigit()]
    assert [int(row[0]) for row in rows] == [1, 2]
    for _batch, yardstick, published, engine, bf16, api, ratio, fused, flow in rows:
        assert min(float(yardstick), float(published), float(engine), float(api)) > 0
        assert bf16 == "n/a" or float(bf16) > 0
        # one run each: the median of the per-run ratios is the ratio of the two times
        assert float(ratio.rstrip("x")) == pytest.approx(float(yardstick) / float(engine), rel=0.02, abs=0.01)
        assert float(fused) < 1e-3 and float(flow) < 1e-2  # the engine's bound


def test_an_image_too_large_for_memory_is_refused_from_its_header(tmp_path, weights, caplog):
    big = tmp_path / "big.png"
    write_image(big, np.zeros((12000, 12000), np.float32))  # a few kB on disk, ~11 GB to fuse
    out = tmp_path / "out"
    assert main(["fuse", "--fixed", str(big), "--moving", str(big), "--weights", str(weights),
                 "--output-dir", str(out)]) == 2
    message = caplog.text
    assert "fusing a 12000 x 12000 pair would need about 11.7 GB" in message
    assert "limit of 8 GB" in message and "--max-memory" in message
    assert not out.exists()


def test_max_memory_sets_the_limit(tmp_path, weights, pair_files, caplog):
    fuse = ["fuse", *pair_files, "--weights", str(weights), "--device", "cpu"]
    assert main([*fuse, "--output-dir", str(tmp_path / "a"), "--max-memory", "1"]) == 2
    assert "more than the limit of 1 GB" in caplog.text
    assert main([*fuse, "--output-dir", str(tmp_path / "b"), "--max-memory", "2"]) == 0


@pytest.mark.parametrize(("device", "message"), [("banana", "unknown device 'banana'"), ("mps", "MPS")])
def test_bad_devices_are_refused_before_any_work(tmp_path, weights, pair_files, caplog, device, message):
    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    out = tmp_path / "out"
    assert main(["fuse", *pair_files, "--weights", str(weights), "--output-dir", str(out), "--device", device]) == 2
    assert message in caplog.text and "Traceback" not in caplog.text
    assert not out.exists()


def test_weights_of_another_modality_are_refused(tmp_path, weights, pair_files, caplog):
    out = tmp_path / "out"
    fuse = ["fuse", *pair_files, "--weights", str(weights), "--device", "cpu", "--output-dir", str(out)]
    assert main([*fuse, "--modality", "SPECT"]) == 2
    assert "are for CT-MRI but the modality given is SPECT" in caplog.text
    assert not out.exists()
    assert main(fuse) == 0  # without --modality the weights' own is used


def test_ctrl_c_while_the_finished_outputs_are_put_in_place_keeps_them(tmp_path, weights, pair_files, caplog,
                                                                      monkeypatch):
    real_replace = os.replace

    def interrupted_replace(source, target):
        if os.path.isdir(source):  # Ctrl-C just as the complete output folder moves into place
            os.kill(os.getpid(), signal.SIGINT)
        real_replace(source, target)

    monkeypatch.setattr("BSAFusionCore.files.os.replace", interrupted_replace)
    out = tmp_path / "out"
    assert main(["fuse", *pair_files, "--weights", str(weights), "--output-dir", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["displacement.npy", "fused.png", "fusion.json", "warped.png"]
    assert "Ctrl-C came while the finished results were being put in place" in caplog.text
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Ctrl-C works again afterwards
