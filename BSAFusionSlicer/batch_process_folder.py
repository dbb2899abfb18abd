"""Fuse every case of a folder, e.g. in Slicer's batch mode::

    Slicer --no-main-window --python-script batch_process_folder.py CASES_DIR OUTPUT_DIR [--prealign none]

Each sub-folder of CASES_DIR is a case holding two volumes (NRRD, NIfTI, MHA/MHD files or a DICOM
folder): the moving one is recognised by its name (CT, PET, SPECT, ...), the other is the MRI.
Each case gets ``OUTPUT_DIR/<case>/`` with the outputs of ``bsafusion fuse`` (``fused.nrrd``,
``warped.nrrd``, ``displacement.nrrd``, ``prealignment.tfm``, ``preview.png``, ``record.json``);
the folder appears only once complete, and finished cases are skipped when the script is run
again. A failed case is logged and the others go on. A thin front over the library's batch runner
(the same as ``bsafusion batch``); runs with plain Python too.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from BSAFusionSlicerLib import core_path

core_path.add_core_to_path()

from BSAFusionCore.errors import BSAFusionError  # noqa: E402
from BSAFusionCore.options import (  # noqa: E402
    CT_WINDOW_CHOICES,
    MODALITIES,
    PREALIGN_MODES,
    VolumeOptions,
)
from BSAFusionCore.volumes.batch import BatchRun, cases_from_folder, run_batch  # noqa: E402

logger = logging.getLogger("bsafusion.batch")
DEFAULTS = VolumeOptions()


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="BSAFusion on every case folder of a directory.")
    parser.add_argument("cases_dir", type=Path, help="folder with one sub-folder per case")
    parser.add_argument("output_dir", type=Path, help="where each case's results go")
    parser.add_argument("--modality", choices=MODALITIES, help="moving modality (default: from the file name)")
    parser.add_argument("--model", help="model file (.safetensors or authors' .pkl); default: bundled")
    parser.add_argument("--prealign", choices=PREALIGN_MODES, default=DEFAULTS.prealign)
    parser.add_argument("--fuse-only", action="store_true",
                        help="no in-plane registration by the network (volumes aligned after --prealign)")
    parser.add_argument("--refine", action="store_true",
                        help="refine the network's in-plane registration of each slice (~0.5 s per slice)")
    parser.add_argument("--ct-window", choices=CT_WINDOW_CHOICES, default=DEFAULTS.ct_window)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    parser.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size)
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    """Process every case; 0 when all succeeded (or were done already), 1 when some failed, 2 on bad input."""
    args = parse_arguments(argv)
    options = VolumeOptions(prealign=args.prealign, ct_window=args.ct_window, batch_size=args.batch_size,
                            fuse_only=args.fuse_only, refine=args.refine)
    try:
        cases = cases_from_folder(args.cases_dir, args.modality, args.model)
        status = run_batch(cases, args.output_dir, BatchRun(options=options, device=args.device))
    except BSAFusionError as error:
        logger.error("%s", error)
        return 2
    return 1 if status["failed"] else 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    code = main(sys.argv[1:])
    try:
        import slicer

        slicer.util.exit(code)
    except (ImportError, AttributeError):
        sys.exit(code)
