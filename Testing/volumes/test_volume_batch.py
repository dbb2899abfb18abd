"""``bsafusion batch``: one folder per case, failures reported, resume, shards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from BSAFusionCore.cli import main
from BSAFusionCore.cli.batch import parse_shard
from BSAFusionCore.errors import InputError
from BSAFusionCore.volumes.batch import read_manifest


def write_manifest(folder: Path, phantom_files: dict[str, Path], rows: list[str]) -> Path:
    manifest = folder / "cases.csv"
    fixed, moving = phantom_files["fixed"], phantom_files["moving"]
    lines = ["case,fixed,moving,modality"] + [row.format(fixed=fixed, moving=moving) for row in rows]
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def run_batch(manifest: Path, out: Path, *options: str) -> int:
    return main(["batch", str(manifest), "--output-dir", str(out), "--device", "cpu", *options])


def test_failed_case_is_reported_the_rest_go_on_and_a_rerun_resumes(
    bundled: Path, phantom_files: dict[str, Path], tmp_path: Path
) -> None:
    manifest = write_manifest(tmp_path, phantom_files, [
        "a,{fixed},{moving},CT",
        "broken,{fixed},missing.nrrd,CT",
        "c,{fixed},{moving},",
    ])
    out = tmp_path / "out"
    assert run_batch(manifest, out) == 1
    assert (out / "a" / "record.json").is_file()
    assert (out / "c" / "record.json").is_file()
    assert not (out / "broken" / "record.json").exists()
    status = json.loads((out / "batch-status-1-of-1.json").read_text())
    assert status["done"] == ["a", "c"]
    assert status["failed"][0].startswith("broken: ")

    finished = (out / "a" / "fused.nrrd").stat().st_mtime_ns
    assert run_batch(manifest, out) == 1
    status = json.loads((out / "batch-status-1-of-1.json").read_text())
    assert status["skipped"] == ["a", "c"]
    assert (out / "a" / "fused.nrrd").stat().st_mtime_ns == finished
    assert not (out / "broken").exists()  # a failed case leaves no folder

    (out / "a" / "stale.txt").write_text("not of this run")
    assert run_batch(manifest, out, "--overwrite") == 1
    status = json.loads((out / "batch-status-1-of-1.json").read_text())
    assert status["done"] == ["a", "c"]
    assert not (out / "a" / "stale.txt").exists()  # the case folder is replaced whole


def test_shards_split_the_manifest(bundled: Path, phantom_files: dict[str, Path], tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path, phantom_files, [f"case{i},{{fixed}},{{moving}},CT" for i in range(3)])
    out = tmp_path / "out"
    assert run_batch(manifest, out, "--shard", "2/2") == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["case1"]
    assert run_batch(manifest, out, "--shard", "1/2") == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["case0", "case1", "case2"]
    assert json.loads((out / "batch-status-1-of-2.json").read_text())["done"] == ["case0", "case2"]


def test_unknown_modality_fails_that_case(bundled: Path, phantom_files: dict[str, Path], tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path, phantom_files, ["x,{fixed},{moving},MR"])
    assert run_batch(manifest, tmp_path / "out") == 1
    status = json.loads((tmp_path / "out" / "batch-status-1-of-1.json").read_text())
    assert "unknown modality" in status["failed"][0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("fixed,moving\na.nrrd,b.nrrd\n", "lacks the column"),
        ("case,fixed,moving,colour\nx,a,b,red\n", "unknown column"),
        ("case,fixed,moving\nx,a,b\nx,c,d\n", "repeats the case name"),
        ("case,fixed,moving\n../up,a,b\n", "not a safe folder name"),
    ],
)
def test_bad_manifests_are_refused(tmp_path: Path, text: str, message: str) -> None:
    manifest = tmp_path / "cases.csv"
    manifest.write_text(text)
    with pytest.raises(InputError, match=message):
        read_manifest(manifest)


def test_relative_paths_are_read_from_the_manifest_folder(tmp_path: Path) -> None:
    manifest = tmp_path / "cases.csv"
    manifest.write_text("case,fixed,moving,prealign\nx,mri/a.nrrd,ct/b.nrrd,rigid\n")
    (case,) = read_manifest(manifest)
    assert case.fixed == tmp_path / "mri" / "a.nrrd"
    assert case.prealign == "rigid"
    assert case.modality is None


@pytest.mark.parametrize("text", ["0/2", "3/2", "1", "a/b", "1/0"])
def test_bad_shards_are_refused(text: str) -> None:
    with pytest.raises(InputError, match="--shard"):
        parse_shard(text)
