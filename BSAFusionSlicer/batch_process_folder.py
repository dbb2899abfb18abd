"""Fuse every case of a folder with the Slicer logic, e.g. in Slicer's batch mode::

    Slicer --no-main-window --python-script batch_process_folder.py CASES_DIR OUTPUT_DIR [--prealign rigid]

Each sub-folder of CASES_DIR is a case holding two volumes (NRRD, NIfTI, MHA/MHD files or a DICOM
folder): the moving one is recognised by its name (CT, PET, SPECT, ...), the other is the MRI.
Each case gets ``OUTPUT_DIR/<case>/`` with ``fused.nrrd``, ``warped.nrrd``, ``displacement.h5``
(a grid transform Slicer loads) and ``record.json``; the folder appears only once complete, and
finished cases are skipped when the script is run again. A failed case is logged and the others go on.
Runs with plain Python too where the ``slicer-core`` package is installed.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for folder in (HERE, HERE.parent):  # installed: everything beside this file; source checkout: repo root
    if (folder / "BSAFusionCore").is_dir() or (folder / "BSAFusionSlicerLib").is_dir():
        sys.path.insert(0, str(folder))

import slicer  # noqa: E402
from BSAFusionSlicerLib.logic import RECORD_ATTRIBUTE, process  # noqa: E402
from BSAFusionSlicerLib.modality import guess_modality  # noqa: E402
from BSAFusionSlicerLib.volume_nodes import image_from_volume_node, update_volume_node_from_image  # noqa: E402

from BSAFusionCore.errors import BSAFusionError, InputError  # noqa: E402
from BSAFusionCore.options import CT_WINDOW_AUTO, CT_WINDOW_CHOICES, DEFAULT_PREALIGN, MODALITIES, PREALIGN_MODES  # noqa: E402
from BSAFusionCore.volumes.io import read_volume, write_image  # noqa: E402

logger = logging.getLogger("bsafusion.batch")

VOLUME_SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd")


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="BSAFusion on every case folder of a directory.")
    parser.add_argument("cases_dir", type=Path, help="folder with one sub-folder per case")
    parser.add_argument("output_dir", type=Path, help="where each case's results go")
    parser.add_argument("--modality", choices=MODALITIES, help="moving modality (default: from the file name)")
    parser.add_argument("--model", help="model file (.safetensors or authors' .pkl); default: bundled")
    parser.add_argument("--prealign", choices=PREALIGN_MODES, default=DEFAULT_PREALIGN)
    parser.add_argument("--ct-window", choices=CT_WINDOW_CHOICES, default=CT_WINDOW_AUTO)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    parser.add_argument("--batch-size", type=int, default=8)
    return parser.parse_args(argv)


def case_volumes(case: Path) -> tuple[Path, Path, str]:
    """(fixed, moving, guessed moving modality) of a case folder."""
    entries = [p for p in sorted(case.iterdir()) if p.is_dir() or p.name.lower().endswith(VOLUME_SUFFIXES)]
    moving = [(p, guess_modality(p.name)) for p in entries if guess_modality(p.name)]
    fixed = [p for p in entries if not guess_modality(p.name)]
    if len(moving) != 1 or len(fixed) != 1:
        raise InputError(
            f"case {case.name}: expected one MRI and one CT/PET/SPECT volume (named so), "
            f"found {[p.name for p in entries]}"
        )
    return fixed[0], moving[0][0], moving[0][1]


def node_from_file(scene, path: Path, role: str):
    image = read_volume(path, role)
    rgb = image.GetNumberOfComponentsPerPixel() > 1
    node = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode" if rgb else "vtkMRMLScalarVolumeNode", path.name)
    update_volume_node_from_image(node, image)
    return node


def write_transform(scene, transform_node, path: Path) -> None:
    storage = scene.AddNewNodeByClass("vtkMRMLTransformStorageNode")
    storage.SetFileName(str(path))
    if not storage.WriteData(transform_node):
        raise BSAFusionError(f"could not write the displacement transform {path}")


def run_case(case: Path, target: Path, args: argparse.Namespace) -> None:
    """Process one case into ``target`` (written under a temporary name, then renamed)."""
    fixed_path, moving_path, guessed = case_volumes(case)
    scene = slicer.vtkMRMLScene()
    fixed = node_from_file(scene, fixed_path, "fixed volume")
    moving = node_from_file(scene, moving_path, "moving volume")
    options = {"prealign": args.prealign, "device": args.device, "batch_size": args.batch_size}
    if args.model:
        options["model"] = args.model
    if args.ct_window:
        options["ct_window"] = args.ct_window
    nodes = process(fixed, moving, args.modality or guessed, **options)

    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    write_image(image_from_volume_node(nodes.fused), partial / "fused.nrrd")
    write_image(image_from_volume_node(nodes.warped), partial / "warped.nrrd")
    write_transform(scene, nodes.transform, partial / "displacement.h5")
    record = json.loads(nodes.fused.GetAttribute(RECORD_ATTRIBUTE))
    record["inputs"] = {"fixed": str(fixed_path), "moving": str(moving_path)}
    (partial / "record.json").write_text(json.dumps(record, indent=2, default=str), encoding="utf-8")
    partial.rename(target)


def main(argv: list[str]) -> int:
    """Process every case; 0 when all succeeded (or were done already), 1 when some failed."""
    args = parse_arguments(argv)
    if not args.cases_dir.is_dir():
        logger.error("%s is not a folder", args.cases_dir)
        return 2
    args.output_dir.mkdir(parents=True, exist_ok=True)
    failed = []
    for case in sorted(p for p in args.cases_dir.iterdir() if p.is_dir()):
        target = args.output_dir / case.name
        if target.is_dir():
            logger.info("%s: done already, skipped", case.name)
            continue
        try:
            run_case(case, target, args)
            logger.info("%s: done", case.name)
        except (BSAFusionError, RuntimeError, OSError) as error:
            logger.error("%s: %s", case.name, error)
            failed.append(case.name)
    if failed:
        logger.error("%d case(s) failed: %s", len(failed), ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    code = main(sys.argv[1:])
    if hasattr(slicer, "app"):
        slicer.util.exit(code)
    else:
        sys.exit(code)
