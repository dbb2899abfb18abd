#!/usr/bin/env python3
"""BSAFusion as a Slicer scripted CLI module; also runs standalone from a shell.

The command line is built from ``BSAFusionCLI.xml`` (the module's SEM description), so the two
cannot disagree. Progress goes to stdout as ``<filter-progress>`` lines, which Slicer shows.

    python BSAFusionCLI.py --xml
    python BSAFusionCLI.py MRI.nrrd CT.nrrd --modality CT --prealign rigid \
        --fused fused.nrrd --warped warped.nrrd --displacement displacement.h5
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

XML_PATH = Path(__file__).with_suffix(".xml")
FILTER_NAME = "BSAFusion"


def _import_core() -> None:
    """Use an importable BSAFusionCore, else the one installed with the extension, else the source tree's.

    In an installed extension this script is in ``lib/Slicer-X.Y/cli-modules`` and BSAFusionCore
    (with ``Resources/weights``) in ``lib/Slicer-X.Y/qt-scripted-modules``; in a checkout both are
    two folders up.
    """
    try:
        import BSAFusionCore  # noqa: F401
    except ImportError:
        here = Path(__file__).resolve()
        for folder in (here.parents[1] / "qt-scripted-modules", here.parents[2]):
            if (folder / "BSAFusionCore").is_dir():
                sys.path.insert(0, str(folder))
                return
        raise


def build_parser() -> argparse.ArgumentParser:
    """An argparse parser with one argument per parameter of the XML."""
    root = ElementTree.parse(XML_PATH).getroot()
    parser = argparse.ArgumentParser(prog="BSAFusionCLI", description=root.findtext("title"))
    parser.add_argument("--xml", action="store_true", help="print the module's XML description and exit")
    positional = []
    for group in root.iter("parameters"):
        for element in group:
            name = element.findtext("name")
            if name is None:
                continue
            default = element.findtext("default")
            options: dict = {"help": (element.findtext("description") or "").strip()}
            if element.tag == "boolean":
                options["action"] = "store_true"
            else:
                options["type"] = {"integer": int, "float": float}.get(element.tag, str)
                options["default"] = None if default is None else options["type"](default)
                choices = [e.text for e in element.findall("element")]
                if choices:
                    options["choices"] = choices
            if element.findtext("index") is not None:
                positional.append((int(element.findtext("index")), name, options))
            else:
                parser.add_argument(element.findtext("longflag"), dest=name, **options)
    for _, name, options in sorted(positional, key=lambda item: item[0]):
        parser.add_argument(name, nargs="?", **{k: v for k, v in options.items() if k != "default"})
    return parser


def _emit(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def progress_line(fraction: float, stage: str) -> None:
    _emit(f"<filter-progress>{fraction:.4f}</filter-progress>")
    _emit(f"<filter-comment>{stage}</filter-comment>")


def run(args: argparse.Namespace) -> None:
    """Fuse and write every output that was asked for, all together or none."""
    from BSAFusionCore.errors import InputError
    from BSAFusionCore.files import staged_files
    from BSAFusionCore.model import load_model, model_source
    from BSAFusionCore.options import VolumeOptions, slice_axis_index
    from BSAFusionCore.volumes import fuse_volumes
    from BSAFusionCore.volumes.io import read_volume, write_image, write_transform
    from BSAFusionCore.volumes.outputs import run_record, write_displacement, write_record

    if not args.fixedVolume or not args.movingVolume:
        raise InputError("both the fixed and the moving volume are needed")
    outputs = (args.fusedVolume, args.warpedVolume, args.displacementTransform, args.recordFile)
    if not any(outputs):
        raise InputError("no output was asked for (--fused, --warped, --displacement or --record)")
    options = VolumeOptions(
        prealign=args.prealign, fuse_only=args.fuseOnly, refine=args.refine, axis=slice_axis_index(args.axis),
        ct_window=args.ctWindow,
        color_fusion=args.colorFusion, colormap=args.colormap,
        percentiles=(args.lowPercentile, args.highPercentile), batch_size=args.batchSize,
    )
    fixed = read_volume(args.fixedVolume, "fixed volume")
    moving = read_volume(args.movingVolume, "moving volume")
    source = model_source(args.modality, args.weights)
    model = load_model(source, device=None if args.device in (None, "", "auto") else args.device)
    result = fuse_volumes(fixed, moving, model, **options.as_kwargs(), progress=progress_line)
    inputs = {"fixed": args.fixedVolume, "moving": args.movingVolume, "model_source": source}
    writers = [
        (args.fusedVolume, lambda path: write_image(result.fused, path)),
        (args.warpedVolume, lambda path: write_image(result.warped, path)),
        (args.displacementTransform, lambda path: write_displacement(result, path)),
        (args.prealignmentTransform if result.prealignment is not None else None,
         lambda path: write_transform(result.prealignment, path)),
        (args.recordFile, lambda path: write_record(run_record(result, inputs), path)),
    ]
    wanted = [(target, write) for target, write in writers if target]
    with staged_files([target for target, _ in wanted]) as temps:  # all outputs appear together, or none
        for temp, (_, write) in zip(temps, wanted, strict=True):
            write(temp)

def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.xml:
        _emit(XML_PATH.read_text(encoding="utf-8"))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    _import_core()
    from BSAFusionCore.errors import BSAFusionError

    started = time.perf_counter()
    _emit(
        f"<filter-start><filter-name>{FILTER_NAME}</filter-name>"
        "<filter-comment>registering and fusing</filter-comment></filter-start>"
    )
    try:
        run(args)
    except BSAFusionError as error:
        sys.stderr.write(f"BSAFusion error: {error}\n")
        return 2
    _emit(
        f"<filter-end><filter-name>{FILTER_NAME}</filter-name>"
        f"<filter-time>{time.perf_counter() - started:.2f}</filter-time></filter-end>"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
