"""``bsafusion evaluate`` and ``bsafusion benchmark`` on tiny generated data with a random network."""

from __future__ import annotations

import csv
import json

from BSAFusionCore.cli import main
from BSAFusionCore.metrics import FUSION_METRICS


def _rows(path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_evaluate_a_folder_test_set(tmp_path, testset_dir, weights_file, capsys):
    out = tmp_path / "eval"
    code = main(["evaluate", "--testset", str(testset_dir), "--weights", str(weights_file),
                 "--device", "cpu", "--output-dir", str(out)])
    assert code == 0
    rows = _rows(out / "cases.csv")
    assert [r["case"] for r in rows] == ["case0", "case1"]
    expected = [f"{m}_{s}" for s in ("label", "warped") for m in FUSION_METRICS]
    expected += ["NCC", "SSIM", "MAE", "Folding", "Seconds"]
    assert list(rows[0])[2:] == expected  # no EPE: a folder test set has no ground truth
    assert all(float(r["Seconds"]) > 0 for r in rows)
    assert (out / "box_Qabf_label.png").is_file()
    assert "| Qvif_label | higher |" in capsys.readouterr().out
    record = json.loads((out / "run.json").read_text())
    assert record["methods"] == ["BSAFusion (single stage)"]
    assert record["model"]["trained"] is False


def test_benchmark_generated_cases(tmp_path, aligned_dir, weights_file):
    out = tmp_path / "bench"
    code = main(["benchmark", "--aligned", str(aligned_dir), "--modality", "CT", "--count", "2", "--seed", "1",
                 "--weights", str(weights_file), "--device", "cpu", "--bspline-iterations", "5",
                 "--no-plots", "--output-dir", str(out)])
    assert code == 0
    rows = _rows(out / "cases.csv")
    methods = ["no registration + fusion", "B-spline (SimpleITK) + fusion", "BSAFusion (single stage)"]
    assert [r["method"] for r in rows] == [m for m in methods for _ in range(2)]
    no_registration = [r for r in rows if r["method"] == methods[0]]
    # The generated cases have a ground truth; no registration means a zero displacement.
    assert all(float(r["EPE"]) > 0 and float(r["Folding"]) == 0 for r in no_registration)
    assert not list(out.glob("*.png"))
    summary = _rows(out / "summary.csv")
    assert {r["method"] for r in summary} == set(methods)


def test_missing_test_set_fails_cleanly(tmp_path, weights_file):
    out = tmp_path / "never"
    code = main(["evaluate", "--testset", str(tmp_path / "absent"), "--weights", str(weights_file),
                 "--device", "cpu", "--output-dir", str(out)])
    assert code == 2
    assert not out.exists()


def test_evaluate_chosen_cases(tmp_path, aligned_dir, weights_file, caplog):
    common = ["evaluate", "--aligned", str(aligned_dir), "--modality", "CT", "--weights", str(weights_file),
              "--device", "cpu", "--no-plots"]
    assert main([*common, "--cases", "000", "--output-dir", str(tmp_path / "held_out")]) == 0
    assert len(_rows(tmp_path / "held_out" / "cases.csv")) == 3
    assert "(cases 000)" in json.loads((tmp_path / "held_out" / "run.json").read_text())["testset"]
    assert main([*common, "--cases", "000,28", "--output-dir", str(tmp_path / "absent")]) == 2
    assert "has no CT-MRI case 28" in caplog.text
    assert not (tmp_path / "absent").exists()
