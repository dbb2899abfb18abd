"""The volume options on the command line (``fuse`` and ``batch``), to and from :class:`VolumeOptions`."""

from __future__ import annotations

import argparse

from ..options import (
    COLORMAPS,
    CT_WINDOW_CHOICES,
    DEFAULT_CT_WINDOW,
    DEFAULT_PREALIGN_2D,
    PREALIGN_MODES,
    VolumeOptions,
)

DEFAULTS = VolumeOptions()
ALSO_FOR_2D = frozenset({"prealign", "fuse_only", "refine"})
"""The volume options that also apply to a pair of 2D images."""


def add_volume_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of volumes (``--prealign`` also applies to 2D pairs; the input, output and model options belong
    to each command)."""
    group = parser.add_argument_group("volumes (NRRD, NIfTI, MHA, DICOM folder)")
    group.add_argument("--prealign", choices=PREALIGN_MODES,
                       help=f"pre-alignment by mutual information before the network: 3-D for volumes (default: "
                            f"{DEFAULTS.prealign}; none when the volumes are already aligned), 2-D for a pair of "
                            f"2D images (default: {DEFAULT_PREALIGN_2D}; rigid for a clearly misaligned pair)")
    group.add_argument("--fuse-only", action="store_true",
                       help="fuse without the network's registration, for images already aligned (after the "
                            "pre-alignment, if any): the displacement is that of the pre-alignment alone")
    group.add_argument("--refine", action="store_true",
                       help="refine the network's registration of each pair (slice) by fitting a smooth correction "
                            "to its edges, for CT pairs left misaligned (held-out case: EPE 0.90 -> 0.79 x no "
                            "registration; level over all CT cases; moves aligned pairs a little), about 0.5 s "
                            "per slice on 2 CPU cores; see docs/registration_refinement.md")
    group.add_argument("--axis", type=int, choices=(0, 1, 2), default=DEFAULTS.axis,
                       help="ITK index axis to slice through (default: the one nearest inferior-superior)")
    group.add_argument("--ct-window", choices=CT_WINDOW_CHOICES, default=DEFAULTS.ct_window,
                       help=f"map CT intensities (HU) with this window; auto: {DEFAULT_CT_WINDOW} for a CT in HU, "
                            "else the percentiles; padding below -1024 HU is background (default: auto)")
    group.add_argument("--color-fusion", action="store_true",
                       help="colour the (PET/SPECT) moving volume with --colormap; RGB fused output")
    group.add_argument("--colormap", choices=COLORMAPS, default=DEFAULTS.colormap)
    group.add_argument("--percentiles", type=float, nargs=2, default=DEFAULTS.percentiles,
                       metavar=("LOW", "HIGH"), help="intensity percentiles mapped to 0 and 1 (default: %(default)s)")
    group.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size,
                       help="slices per model call (default: %(default)s)")


def volume_options(args: argparse.Namespace) -> VolumeOptions:
    return VolumeOptions(
        prealign=args.prealign or DEFAULTS.prealign, fuse_only=args.fuse_only, refine=args.refine, axis=args.axis,
        ct_window=args.ct_window,
        color_fusion=args.color_fusion,
        colormap=args.colormap, percentiles=tuple(args.percentiles), batch_size=args.batch_size,
    )


def given_as_flags(options: VolumeOptions, *, leave_out: frozenset[str] = frozenset()) -> list[str]:
    """The options set to something else than their default, as ``--name value``, but those in ``leave_out``."""
    flags = []
    for name, value in options.changed().items():
        if name in leave_out:
            continue
        values = value if isinstance(value, tuple) else (value,)
        shown = "" if isinstance(value, bool) else " " + " ".join(map(str, values))
        flags.append(f"--{name.replace('_', '-')}{shown}")
    return flags
