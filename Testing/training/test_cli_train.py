"""``bsafusion train`` end to end on tiny generated folders, alone and under torchrun (2 CPU processes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from training_phantoms import phantom_pair, write_aanlib

from BSAFusionCore.cli import main
from BSAFusionCore.inference import fuse_images
from BSAFusionCore.model import load_model
from BSAFusionCore.network import BSAFusionNet
from BSAFusionCore.training.export import recorded_stages
from BSAFusionCore.training.trainer import BEST_CHECKPOINT, LAST_CHECKPOINT, load_checkpoint
from BSAFusionCore.weights import read_weights, save_weights

TINY = ["--image-size", "32", "--batch-size", "2", "--val-fraction", "0.5", "--val-every", "1", "--val-size", "48"]


@pytest.fixture()
def aanlib(tmp_path: Path) -> Path:
    return write_aanlib(tmp_path / "data", "CT", cases=2, slices=2, size=32)


def test_train_resume_and_export(aanlib: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["train", "--aanlib", str(aanlib), "--run-dir", str(run), *TINY, "--epochs", "2"]
    assert main([*args, "--max-steps", "1"]) == 0
    # stopped early: the weights so far are exported all the same (no validation yet)
    assert read_weights(run / "BSAFusion_CT.safetensors")[1]["steps"] == 1
    assert main(args) == 2  # the run folder is taken
    assert main([*args, "--resume"]) == 0
    assert load_checkpoint(run / LAST_CHECKPOINT)["state"]["epoch"] == 2

    weights = run / "BSAFusion_CT.safetensors"
    state, metadata = read_weights(weights)
    assert metadata["modality"] == "CT" and metadata["image_size"] == 32
    assert metadata["epochs_done"] == metadata["validation_epoch"] in (1, 2)  # the best validated epoch
    assert {"ssim", "ncc", "epe"} <= set(metadata["validation"])
    assert all(t.dtype == torch.float16 for t in state.values())
    card = weights.with_suffix(".md").read_text()
    assert "no registration" in card and "48x48" in card and "not trained" not in card
    assert "Learning curve" in card and metadata["stage"] == "joint"
    assert metadata["registers"] is True
    assert load_model(weights, device="cpu").image_size == 32

    out = tmp_path / "out" / "w.safetensors"
    assert main(["train", "--run-dir", str(run), "--export", str(out), "--export-size", "48"]) == 0
    assert read_weights(out)[1]["image_size"] == 48 and read_weights(out)[1]["training_image_size"] == 32
    assert "48x48 (inference resizes to it); trained at 32x32" in out.with_suffix(".md").read_text()
    assert load_model(out, device="cpu").registration_size == 32  # where its displacement was learned
    assert main(["train", "--run-dir", str(run), "--export", str(out), "--export-size", "50"]) == 2

    fine_tune = ["train", "--aanlib", str(aanlib), "--run-dir", str(tmp_path / "fine"), *TINY, "--epochs", "1"]
    assert main([*fine_tune, "--init", str(weights), "--max-steps", "1"]) == 0


def test_resume_keeps_the_flow_head_lr_and_reads_the_option_it_replaced(aanlib: Path, tmp_path: Path) -> None:
    def args(run: Path) -> list[str]:
        return ["train", "--aanlib", str(aanlib), "--run-dir", str(run), *TINY, "--epochs", "3",
                "--stage", "registration"]

    assert main([*args(tmp_path / "a"), "--flow-head-lr", "matched", "--max-steps", "1"]) == 0
    assert main([*args(tmp_path / "a"), "--resume", "--max-steps", "2"]) == 0  # not the command line's default
    assert load_checkpoint(tmp_path / "a" / LAST_CHECKPOINT)["config"]["flow_head_lr"] == "matched"
    # a run saved before --flow-head-lr existed recorded level_scaled_flow_lr instead
    assert main([*args(tmp_path / "b"), "--max-steps", "1"]) == 0
    checkpoint = load_checkpoint(tmp_path / "b" / LAST_CHECKPOINT)
    assert checkpoint["config"].pop("flow_head_lr") == "level"
    checkpoint["config"]["level_scaled_flow_lr"] = True
    torch.save(checkpoint, tmp_path / "b" / LAST_CHECKPOINT)
    assert main([*args(tmp_path / "b"), "--resume", "--max-steps", "2"]) == 0
    assert load_checkpoint(tmp_path / "b" / LAST_CHECKPOINT)["config"]["flow_head_lr"] == "level"


def test_fusion_only_weights_say_they_do_not_register(
    aanlib: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run = tmp_path / "fusion-only"
    args = ["train", "--aanlib", str(aanlib), "--run-dir", str(run), *TINY, "--epochs", "2", "--freeze-registration"]
    assert main(args) == 0
    weights = run / "BSAFusion_CT.safetensors"
    metadata = read_weights(weights)[1]
    assert metadata["registers"] is False
    assert metadata["validation_epoch"] == 2  # the registration figures are flat: the latest is kept
    assert "Registration: not trained" in weights.with_suffix(".md").read_text()
    model = load_model(weights, device="cpu")
    assert not model.registers
    assert "registration of these weights was not trained" in caplog.text
    mri, ct = (image / 255.0 for image in phantom_pair(32, 0))
    displacement = fuse_images(mri, ct, model).displacement
    assert not displacement.any()

    # Fine-tuning keeps the flag while the registration stays frozen, and drops it once it trains.
    for freeze, expected in ((["--freeze-registration"], False), ([], True)):
        tuned = tmp_path / f"tuned{len(freeze)}"
        fine_tune = ["train", "--aanlib", str(aanlib), "--run-dir", str(tuned), *TINY, "--epochs", "1"]
        assert main([*fine_tune, "--init", str(weights), *freeze]) == 0
        assert read_weights(tuned / "BSAFusion_CT.safetensors")[1]["registers"] is expected


def test_staged_schedule_with_a_time_limit(aanlib: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    registration = tmp_path / "registration"
    args = ["train", "--aanlib", str(aanlib), "--run-dir", str(registration), *TINY, "--epochs", "2",
            "--stage", "registration", "--pretrain-steps", "1", "--synthetic-fraction", "0.5",
            "--flow-supervision", "1", "--amp", "bf16", "--ema-decay", "0.9", "--aligned-fraction", "0.25"]
    assert main([*args, "--max-minutes", "0.00001"]) == 0  # stops after its first step, exported
    weights = registration / "BSAFusion_CT.safetensors"
    assert read_weights(weights)[1]["steps"] == 1
    given = args[: args.index("--val-every")] + args[args.index("--val-every") + 2 :]
    assert main([*given, "--resume"]) == 0  # --val-every 1 is kept from the run
    assert load_checkpoint(registration / LAST_CHECKPOINT)["config"]["val_every"] == 1
    metadata = read_weights(weights)[1]
    assert metadata["stage"] == "registration" and metadata["registers"] is True and metadata["steps"] == 2
    assert "folding" in metadata["validation"] and "Qabf" not in metadata["validation"]
    card = weights.with_suffix(".md").read_text()
    assert "--stage registration" in card and "Curriculum: the first 1 steps" in card
    assert "moving average of the training weights (decay 0.9)" in card
    assert "25% of the pairs were left undeformed" in card
    assert "| built-in phantom, its 3 known deformations: endpoint error px" in card
    assert "phantom_epe" in metadata["validation"]
    assert load_checkpoint(registration / BEST_CHECKPOINT)["ema"]  # exported and passed on: the average

    # the next stage starts from the previous one's checkpoint (full precision)
    fusion = ["train", "--aanlib", str(aanlib), "--run-dir", str(tmp_path / "fusion"), *TINY, "--epochs", "2",
              "--stage", "fusion", "--init", str(registration / "best.pt")]
    assert main([*fusion, "--max-steps", "1"]) == 0
    assert main([*fusion, "--resume"]) == 0  # a resumed run keeps what it started from
    metadata = read_weights(tmp_path / "fusion" / "BSAFusion_CT.safetensors")[1]
    assert metadata["stage"] == "fusion" and metadata["registers"] is True and "Qabf" in metadata["validation"]
    assert load_checkpoint(tmp_path / "fusion" / LAST_CHECKPOINT)["config"]["init_weights"].endswith("best.pt")
    card = (tmp_path / "fusion" / "BSAFusion_CT.md").read_text()
    assert "the fusion net only" in card and "| phantom NCC (none) | Qabf |" in card  # the fusion stage's curve
    # the weights carry both stages: settings, steps and the registration stage's curve
    stages = metadata["stages"]
    assert [s["stage"] for s in stages] == ["registration", "fusion"] and [s["steps"] for s in stages] == [2, 2]
    assert stages[0]["curve"] and stages[0]["curve"][-1]["step"] == 2 and stages[1]["init_weights"].endswith("best.pt")
    assert "## Stages" in card and "| 1 | registration | CT-MRI |" in card  # each stage names its pairs
    assert "Learning curve of stage 1, registration (held-out CT-MRI pairs)" in card
    assert "Learning curve of stage 2, fusion (this stage) (held-out CT-MRI pairs)" in card
    # the registration exported with the fusion of other weights: their encoder, classifier and fusion net
    fusion_weights = tmp_path / "fusion" / "BSAFusion_CT.safetensors"
    combined = tmp_path / "combined" / "BSAFusion_CT.safetensors"
    export = ["train", "--run-dir", str(registration), "--export", str(combined)]
    assert main([*export, "--fusion-from", str(fusion_weights)]) == 0
    model, source = load_model(combined, device="cpu"), load_model(fusion_weights, device="cpu")
    assert model.fusion_net is not None and model.two_passes and model.registration_size == 32
    for name, tensor in source.net.state_dict().items():
        if name.startswith(("encoder.", "transfer.classifier.", "fusion_net.")):
            assert torch.equal(model.fusion_net.state_dict()[name], tensor), name
    metadata = read_weights(combined)[1]
    assert metadata["fusion_features"]["weights"] == fusion_weights.name and metadata["stage"] == "registration"
    assert "## The fusion: from `BSAFusion_CT.safetensors`" in combined.with_suffix(".md").read_text()
    fusion_only = tmp_path / "fusion_only" / "BSAFusion_CT.safetensors"
    save_weights(fusion_only, BSAFusionNet(), {"modality": "CT", "image_size": 32, "registers": False})
    fusion_only.with_suffix(".md").write_text("# Title\n\n**Registration: not trained.** No.\n\n## Their table\n")
    assert main([*export, "--fusion-from", str(fusion_only)]) == 0
    card = combined.with_suffix(".md").read_text()  # their card, without what it says of their registration
    assert "### Their table" in card and "Registration: not trained" not in card
    pet = tmp_path / "BSAFusion_PET.safetensors"
    save_weights(pet, BSAFusionNet(), {"modality": "PET", "image_size": 32})
    assert main([*export, "--fusion-from", str(pet)]) == 2  # another modality's fusion
    assert main(["train", "--run-dir", str(registration), "--fusion-from", str(fusion_weights)]) == 2  # no --export
    again = ["train", "--aanlib", str(aanlib), "--run-dir", str(tmp_path / "again"), *TINY, "--epochs", "1",
             "--stage", "registration", "--init", str(combined), "--max-steps", "1"]
    assert main(again) == 0
    assert "training does not carry on: the run starts from its registration network" in caplog.text
    # a stage started from weights files continues their history (our older weights: a summary)
    tuned = tmp_path / "tuned"
    assert main(["train", "--aanlib", str(aanlib), "--run-dir", str(tuned), *TINY, "--epochs", "1", "--max-steps", "1",
                 "--stage", "fusion", "--init", str(tmp_path / "fusion" / "BSAFusion_CT.safetensors")]) == 0
    assert [s["stage"] for s in read_weights(tuned / "BSAFusion_CT.safetensors")[1]["stages"]] == [
        "registration", "fusion", "fusion"]
    joint = ["train", "--aanlib", str(aanlib), "--run-dir", str(tmp_path / "joint"), *TINY, "--pretrain-steps", "5"]
    assert main(joint) == 2  # mixed pairs are for the registration stage only


def test_weights_from_before_stages_were_recorded_give_a_summary() -> None:
    # the metadata of our weights before "stages" (the fusion-only weights shipped until then)
    old = {"source": "bsafusion train", "modality": "CT", "registers": False, "steps": 748, "batch_size": 4,
           "epochs_done": 22, "training_hours": 0.52, "training_image_size": 128, "hardware": "CPU, 2 cores"}
    (record,) = recorded_stages(old)
    assert record["stage"] == "joint, BSFA frozen" and record["steps"] == 748 and record["image_size"] == 128
    assert record["curve"] == []
    assert recorded_stages({**old, "registers": True})[0]["stage"] == "joint"
    assert recorded_stages({**old, "stages": [{"stage": "fusion"}]}) == [{"stage": "fusion"}]
    assert recorded_stages({"source": "the authors"}) == []


def test_one_registration_for_several_modalities(aanlib: Path, tmp_path: Path) -> None:
    write_aanlib(aanlib, "PET", cases=2, slices=2, size=32, rgb=True)
    run = tmp_path / "both"
    args = ["train", "--aanlib", str(aanlib), "--run-dir", str(run), *TINY, "--epochs", "1", "--modality", "CT,PET"]
    assert main(args) == 2  # several modalities share a registration stage only
    assert main([*args, "--stage", "registration"]) == 0
    metadata = read_weights(run / "BSAFusion_CT+PET.safetensors")[1]
    assert metadata["modality"] is None and metadata["modalities"] == ["CT", "PET"]
    assert (metadata["train_pairs"], metadata["val_pairs"]) == (4, 4)  # each modality: one case of two held out
    assert {"CT/epe", "PET/epe", "PET/epe_unregistered", "CT/folding"} <= set(metadata["validation"])
    assert "| PET |" in (run / "BSAFusion_CT+PET.md").read_text()
    assert {"PET/phantom_epe", "CT/phantom_ncc", "phantom_epe"} <= set(metadata["validation"])  # each one's phantom
    # with one modality's fusion the registration becomes that modality's weights
    pet = tmp_path / "BSAFusion_PET.safetensors"
    save_weights(pet, BSAFusionNet(), {"modality": "PET", "image_size": 32, "registers": False})
    combined = tmp_path / "combined" / "BSAFusion_PET.safetensors"
    assert main(["train", "--run-dir", str(run), "--export", str(combined), "--fusion-from", str(pet)]) == 0
    metadata = read_weights(combined)[1]
    assert metadata["modality"] == "PET" and metadata["modalities"] == ["CT", "PET"] and metadata["registers"]
    card = combined.with_suffix(".md").read_text()
    assert card.startswith("# BSAFusion weights for PET-MRI") and "trained on CT-MRI, PET-MRI pairs together" in card
    assert load_model(combined, device="cpu").modality == "PET"
    spect = tmp_path / "BSAFusion_SPECT.safetensors"
    save_weights(spect, BSAFusionNet(), {"modality": "SPECT", "image_size": 32})
    assert main(["train", "--run-dir", str(run), "--export", str(combined), "--fusion-from", str(spect)]) == 2


def test_bad_data_source_is_reported(tmp_path: Path) -> None:
    assert main(["train", "--run-dir", str(tmp_path / "run")]) == 2
    assert main(["train", "--aanlib", str(tmp_path), "--run-dir", str(tmp_path / "run")]) == 2


def test_torchrun_two_cpu_processes(aanlib: Path, tmp_path: Path) -> None:
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "BSAFusionCore", "train", "--aanlib", str(aanlib), "--run-dir", str(run), *TINY,
        "--epochs", "2", "--batch-size", "1", "--device", "cpu",
    ]
    # a time limit that has passed after the first step: every process stops there, the row averages both
    done = subprocess.run([*command, "--max-minutes", "1e-6"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    checkpoint = load_checkpoint(run / LAST_CHECKPOINT)
    # 2 training pairs shared by 2 processes: one step each, both ranks' RNG states kept.
    assert checkpoint["state"]["global_step"] == 1 and len(checkpoint["rng"]) == 2
    assert len((run / "log.csv").read_text().splitlines()) == 2  # the header and the part epoch's row
    done = subprocess.run([*command, "--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    checkpoint = load_checkpoint(run / LAST_CHECKPOINT)
    assert checkpoint["state"]["global_step"] == 2 and checkpoint["state"]["epoch"] == 2
    assert "2 processes" in checkpoint["state"]["hardware"][0]
    assert (run / "BSAFusion_CT.safetensors").is_file()
