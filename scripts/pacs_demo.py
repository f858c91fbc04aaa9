"""`make pacs-demo`: the whole PACS stack on 127.0.0.1 in one command.

1. Orthanc (Debian package, DICOMweb plugin, basic auth) in a temporary storage folder;
2. the sample DICOM mammograms stored into it;
3. MONAI Label serving apps/plaid on Orthanc's DICOMweb root (PLAID's DICOMweb datastore);
4. one inference through MONAI Label's client, on the sample DICOM film the demos leave unlabelled (the one
   `make demo` infers is its PNG sibling of the same woman), whose DICOM SEG and TID 1500 SR are stored in Orthanc;
5. OHIF (the @ohif/app production build, cached outside the checkout) with a same-origin DICOMweb
   proxy to Orthanc; the URL that opens the study with PLAID's SEG is printed.

A model is needed: model/calcification.pt (from `make demo` or `plaid train`), else the brief training
`make demo` runs (same recipe, same folder: the sample data plus five synthetic normal women held out for
the threshold, `plaid_dev.demo_data`) runs first with `plaid train`. Everything keeps running (3D
Slicer works against the printed MONAI Label URL as with `make demo`) until Ctrl-C, unless --exit is given.
"""

from __future__ import annotations

import argparse
import logging
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pydicom
from monailabel.client import MONAILabelClient

from plaid_dev.demo_data import operating_point_line, prepare_demo_studies, withheld_images
from plaid_dev.ohif import OhifUnavailable, start_ohif
from plaid_dev.orthanc import start_orthanc
from plaid_dev.serving import DEMO_RECIPE, REPO_ROOT, start_label_server

USER = "plaid"


def train_briefly(studies: Path, model_path: Path, recipe: Path, epochs: int | None) -> None:
    """Train on the labelled films of the demo studies (as `make demo` does) with `plaid train --recipe` and
    publish the best checkpoint to ``model_path``."""
    with tempfile.TemporaryDirectory() as folder:
        print(f"No model at {model_path}: brief training ({recipe.name}) on {studies} (plaid train)...", flush=True)
        epochs_flag = [] if epochs is None else ["--epochs", str(epochs)]
        subprocess.run([sys.executable, "-m", "plaid.cli", "train", str(studies), "--out", folder,
                        "--recipe", str(recipe), "--on-error", "skip", "--no-progress", *epochs_flag], check=True)
        model_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(Path(folder) / "best.pt", model_path)


def film_to_infer(sample_data: Path, client: MONAILabelClient) -> tuple[str, str]:
    """The MG instance to infer and its sample-data name: the DICOM film the demos leave unlabelled (never
    trained on), else the first image MONAI Label offers (another --sample-data folder)."""
    for path in withheld_images(sample_data):
        if path.suffix.lower() == ".dcm":
            return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID), path.stem
    image_id = client.next_sample("first", {})["id"]
    return image_id, image_id


def main(argv: list[str] | None = None) -> int:
    """Run the PACS demo; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sample-data", type=Path, default=REPO_ROOT / "sample-data")
    parser.add_argument("--studies", type=Path, default=REPO_ROOT / ".demo" / "studies",
                        help="training folder shared with `make demo` (made from --sample-data when missing)")
    parser.add_argument("--model-dir", type=Path, default=REPO_ROOT / "model")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "demo-output" / "pacs")
    parser.add_argument("--orthanc-port", type=int, default=8042)
    parser.add_argument("--port", type=int, default=8000, help="MONAI Label port")
    parser.add_argument("--ohif-port", type=int, default=3000)
    parser.add_argument("--recipe", type=Path, default=DEMO_RECIPE,
                        help="training settings of the brief training when no model exists")
    parser.add_argument("--train-epochs", type=int, help="brief training's epochs (default: the recipe's)")
    parser.add_argument("--exit", action="store_true", help="stop everything after the inference")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")  # output ends with the URL
    args.out.mkdir(parents=True, exist_ok=True)
    model_path = args.model_dir / "calcification.pt"
    if not model_path.is_file():
        train_briefly(prepare_demo_studies(args.sample_data, args.studies), model_path, args.recipe, args.train_epochs)
    print(operating_point_line(model_path)[0], flush=True)

    password = secrets.token_urlsafe(12)
    orthanc = start_orthanc(port=args.orthanc_port, users={USER: password}, log_path=args.out / "orthanc.log")
    server = ohif = None
    try:
        stored = orthanc.upload_folder(args.sample_data, "*.dcm")
        print(f"Orthanc {orthanc.url} (user {USER}, password {password}): {len(stored)} sample DICOMs stored",
              flush=True)
        server = start_label_server(
            orthanc.dicomweb_url, conf={"model_dir": str(args.model_dir)}, port=args.port,
            log_path=args.out / "monailabel.log",
            env={"MONAI_LABEL_DATASTORE_USERNAME": USER, "MONAI_LABEL_DATASTORE_PASSWORD": password,
                 "MONAI_LABEL_DATASTORE_CACHE_PATH": str(REPO_ROOT / ".demo" / "pacs-cache")},
        )
        client = MONAILabelClient(server.url, tmpdir=str(args.out))
        image_id, film = film_to_infer(args.sample_data, client)
        _, result = client.infer("calcification", image_id, {"dicom_outputs": "seg,sr"})
        outputs = result["dicom_outputs"]
        print(f"\nInference on {film} (MG instance {image_id}): {result['patches_positive']} of "
              f"{result['patches_scored']} "
              f"tissue patches positive (threshold {result['threshold']:.3f})")
        for kind, uids in outputs.items():
            print(f"  {kind.upper()} stored in Orthanc: series {uids['SeriesInstanceUID']}")
        print(f"\nMONAI Label: {server.url}  (3D Slicer: MONAILabel module -> server {server.url})")
        try:
            ohif = start_ohif(orthanc.url, (USER, password), port=args.ohif_port)
            study, seg_series = outputs["seg"]["StudyInstanceUID"], outputs["seg"]["SeriesInstanceUID"]
            print(f"OHIF study list: {ohif.url}/")
            if "sr" in outputs:
                print(f"OHIF with the SR's boxes as tracked measurements: "
                      f"{ohif.viewer_url(study, outputs['sr']['SeriesInstanceUID'])}")
            print("Everything runs until Ctrl-C." if not args.exit else "Stopping (--exit).")
            print(f"\nOHIF with PLAID's SEG: {ohif.viewer_url(study, seg_series)}", flush=True)
        except OhifUnavailable as exc:
            print(f"OHIF not served: {exc}")
        if args.exit:
            return 0
        while server.healthy() and orthanc.healthy():
            time.sleep(5)
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        if ohif:
            ohif.stop()
        if server:
            server.stop()
        orthanc.stop()


if __name__ == "__main__":
    sys.exit(main())
