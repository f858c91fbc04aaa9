"""`plaid import`: convert mini-MIAS, CBIS-DDSM or INbreast into PLAID's folder layout."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `import` sub-command and one sub-command per dataset."""
    parser = subparsers.add_parser(
        "import", help="convert a public mammography dataset into PLAID's folder layout",
        description="Write images, masks/ (calcifications), findings/ (other abnormalities), metadata.csv and "
                    "import_report.json.",
    )
    datasets = parser.add_subparsers(dest="dataset", required=True)
    mias = datasets.add_parser("mias", help="mini-MIAS: Info.txt and the PGM (or PNG) films")
    mias.add_argument("info_txt", type=Path, help="MIAS Info.txt (truth rows, origin bottom-left)")
    mias.add_argument("images", type=Path, help="folder with mdbNNN.pgm or mdbNNN.png")
    mias.add_argument("out", type=Path)
    mias.set_defaults(handler=_run_mias)
    cbis = datasets.add_parser("cbis-ddsm", help="CBIS-DDSM: description CSVs + full mammogram / ROI mask DICOMs")
    cbis.add_argument("root", type=Path, help="folder the CSV paths are relative to (the TCIA download)")
    cbis.add_argument("out", type=Path)
    cbis.add_argument("--csv", type=Path, action="append", required=True,
                      help="calc (and optionally mass) case description CSV; repeat for several")
    cbis.add_argument("--pixel-spacing-mm", type=float, help="spacing to record where the DICOM header has none")
    cbis.set_defaults(handler=_run_cbis)
    inbreast = datasets.add_parser("inbreast", help="INbreast: AllDICOMs and AllXML folders")
    inbreast.add_argument("dicoms", type=Path, help="AllDICOMs folder")
    inbreast.add_argument("xml", type=Path, help="AllXML folder")
    inbreast.add_argument("out", type=Path)
    inbreast.add_argument("--clusters", action="store_true", help="also mark 'Cluster' outlines as calcification")
    inbreast.set_defaults(handler=_run_inbreast)


def _print(report: dict, out: Path) -> int:
    print(f"wrote {report['images']} images of {report['patients']} patients to {out} "
          f"({report['calcified_images']} with calcification, {len(report['image_level_only'])} only at image level)")
    for item in report["left_out"]:
        print(f"  left out {item['image_id']}: {item['reason']}")
    return 0


def _run_mias(args: argparse.Namespace) -> int:
    from plaid.importers.mias import import_mias

    return _print(import_mias(args.info_txt, args.images, args.out), args.out)


def _run_cbis(args: argparse.Namespace) -> int:
    from plaid.importers.cbis_ddsm import import_cbis_ddsm

    return _print(import_cbis_ddsm(args.root, args.csv, args.out, args.pixel_spacing_mm), args.out)


def _run_inbreast(args: argparse.Namespace) -> int:
    from plaid.importers.inbreast import import_inbreast

    return _print(import_inbreast(args.dicoms, args.xml, args.out, args.clusters), args.out)
