"""Browser test: headless Chromium opens the served OHIF on a study holding PLAID's SEG and SR; the SEG overlay
is drawn and the SR's boxes become tracked, editable measurements listed in the Measurements panel.

The mammogram is grey everywhere (no black background), so its displayed rectangle can be found in the
screenshot; the SEG covers a known box of it. OHIF tints segment pixels with the segment colour, so in
the SEG view coloured pixels must fill that box (relative to the displayed image) and nowhere else,
and in the plain MG view there must be none. Opening the SR hydrates it into OHIF's measurement tracking: each
box becomes a RectangleROI annotation with its statistics text box and a row of the Measurements panel, which
PLAID's OHIF configuration opens when measurements arrive. Screenshots and the page's DOM are kept in
the test's tmp folder.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from plaid.io.dicom import write_dicom_mammogram
from plaid.pacs import dicomweb
from plaid.pacs.ohif import OhifUnavailable, ensure_ohif, start_ohif
from plaid.pacs.orthanc import orthanc_missing, start_orthanc
from plaid.pacs.seg import SeriesInfo, write_seg
from plaid.pacs.sr import write_sr

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.server,
    pytest.mark.skipif(orthanc_missing() is not None, reason=f"Orthanc unavailable: {orthanc_missing()}"),
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)"),
]

ROWS, COLUMNS = 896, 672
SEG_BOX = (504, 134, 784, 470)  # top, left, bottom, right: lower half, clear of OHIF's banner and tour popup
WINDOW = (1280, 900)
SR_BOXES = [{"patch": 3, "box": [100, 100, 324, 324], "probability": 0.91},
            {"patch": 7, "box": [100, 348, 324, 572], "probability": 0.6}]


def _chromium(url: str, budget_ms: int, *action: str, cwd: Path) -> str:
    """Run headless Chromium on ``url`` for ``budget_ms`` of virtual time with ``action``; its stdout."""
    command = [CHROMIUM, "--headless=new", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
               "--disable-dev-shm-usage", f"--window-size={WINDOW[0]},{WINDOW[1]}",
               f"--virtual-time-budget={budget_ms}", *action, url]
    return subprocess.run(command, check=True, timeout=180, capture_output=True, cwd=cwd, text=True).stdout


def _screenshot(url: str, out: Path, budget_ms: int) -> np.ndarray:
    """A headless Chromium screenshot of ``url`` (RGB array) after ``budget_ms`` of virtual time."""
    _chromium(url, budget_ms, f"--screenshot={out}", cwd=out.parent)
    return np.asarray(Image.open(out).convert("RGB")).astype(int)


def _tracked_measurements(url: str, out: Path) -> tuple[int, int, list[str]]:
    """After opening ``url``: the count OHIF's Measurements panel shows, how many RectangleROI annotations its
    measurement tracking drew, and the panel's row labels.

    Each tracked rectangle carries a statistics text box ("Area: ... Mean: ..."); the SR viewport's own
    read-only drawing has none. The page's DOM is kept in ``out``.
    """
    panel, drawn, labels = 0, 0, []
    for budget_ms in (30000, 60000, 90000):
        dom = _chromium(url, budget_ms, "--dump-dom", cwd=out.parent)
        out.write_text(dom)
        counts = re.findall(r"<span>Measurements \((\d+)\)</span>", dom)
        panel = int(counts[0]) if counts else 0
        drawn = len(re.findall(r">Area: [0-9.]+ mm", dom))
        labels = re.findall(r">(Calcification patch [^<]*)<", dom)
        if panel >= len(SR_BOXES) and drawn >= len(SR_BOXES):
            break
    return panel, drawn, labels


def _image_rect(rgb: np.ndarray) -> tuple[int, int, int, int] | None:
    """Bounding box (top, left, bottom, right) of the grey image in the viewport area (right of the side panel)."""
    grey = (np.abs(rgb[..., 0] - rgb[..., 1]) < 6) & (np.abs(rgb[..., 1] - rgb[..., 2]) < 6) & (rgb[..., 1] > 45)
    grey[:, : rgb.shape[1] // 4] = False
    # the image is hundreds of pixels wide and tall; grey toolbar icons and text are not
    rows, columns = np.flatnonzero(grey.sum(axis=1) > 150), np.flatnonzero(grey.sum(axis=0) > 150)
    if rows.size == 0 or columns.size == 0:
        return None
    return int(rows[0]), int(columns[0]), int(rows[-1]) + 1, int(columns[-1]) + 1


def _tinted(rgb: np.ndarray) -> np.ndarray:
    """Pixels clearly coloured by a red-dominant segment colour (grey pixels have R = G = B)."""
    return (rgb[..., 0] - np.maximum(rgb[..., 1], rgb[..., 2])) > 25


def _expected_box(rect: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    top, left, bottom, right = rect
    scale_y, scale_x = (bottom - top) / ROWS, (right - left) / COLUMNS
    return (round(top + SEG_BOX[0] * scale_y), round(left + SEG_BOX[1] * scale_x),
            round(top + SEG_BOX[2] * scale_y), round(left + SEG_BOX[3] * scale_x))


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory):
    """Orthanc + OHIF serving one grey MG image and PLAID's SEG of a box on it."""
    try:
        dist = ensure_ohif()
    except OhifUnavailable as exc:
        pytest.skip(str(exc))
    work = tmp_path_factory.mktemp("ohif")
    yy, xx = np.mgrid[0:ROWS, 0:COLUMNS]
    pixels = 1400 + 800 * (yy / ROWS) + 400 * (xx / COLUMNS)  # grey from edge to edge, never black
    path = write_dicom_mammogram(work / "mg.dcm", pixels, bits_stored=12, window=(2048, 4096), laterality="L",
                                 view="CC", patient_id="OHIFTEST")
    source = pydicom.dcmread(path)
    mask = np.zeros((ROWS, COLUMNS), dtype=np.uint8)
    top, left, bottom, right = SEG_BOX
    mask[top:bottom, left:right] = 1
    seg = write_seg(source, mask, SeriesInfo("PLAID calcification (AI)"))
    sr = write_sr(source, SR_BOXES, SeriesInfo("PLAID calcification report (AI)", number=9002))
    orthanc = start_orthanc(users={"viewer": "pw"}, log_path=work / "orthanc.log")
    orthanc.upload(path)
    dicomweb.store(dicomweb.make_client(orthanc.dicomweb_url, "viewer", "pw"), [seg, sr])
    ohif = start_ohif(orthanc.url, ("viewer", "pw"), dist=dist)
    yield {"ohif": ohif, "source": source, "seg": seg, "sr": sr, "work": work}
    ohif.stop()
    orthanc.stop()


def _capture(url: str, out: Path, want_tint: bool) -> np.ndarray:
    """Screenshot until the image (and, if wanted, the overlay) is on screen; three tries, longer each time."""
    rgb = None
    for budget_ms in (30000, 60000, 90000):
        rgb = _screenshot(url, out, budget_ms)
        rect = _image_rect(rgb)
        if rect is not None and (not want_tint or _tinted(rgb).sum() > 100):
            return rgb
    return rgb


def test_ohif_draws_plaid_seg_over_the_mammogram(study) -> None:
    ohif, source, seg, work = study["ohif"], study["source"], study["seg"], study["work"]
    seg_view = _capture(ohif.viewer_url(str(source.StudyInstanceUID), str(seg.SeriesInstanceUID)),
                        work / "ohif_seg_view.png", want_tint=True)
    plain_view = _capture(ohif.viewer_url(str(source.StudyInstanceUID), str(source.SeriesInstanceUID)),
                          work / "ohif_mg_view.png", want_tint=False)
    print(f"screenshots: {work / 'ohif_seg_view.png'} {work / 'ohif_mg_view.png'}")

    for view in (seg_view, plain_view):
        rect = _image_rect(view)
        assert rect is not None, "OHIF did not display the mammogram"
        assert rect[2] - rect[0] > 200 and rect[3] - rect[1] > 150

    rect = _image_rect(seg_view)
    top, left, bottom, right = _expected_box(rect)
    tinted = _tinted(seg_view)
    tinted[: rect[0]], tinted[rect[2]:], tinted[:, : rect[1]], tinted[:, rect[3]:] = False, False, False, False
    inside = np.zeros_like(tinted)
    margin = 4
    inside[top - margin : bottom + margin, left - margin : right + margin] = True
    box_area = (bottom - top) * (right - left)
    assert tinted[top:bottom, left:right].sum() > 0.5 * box_area, "the SEG box is not drawn"
    assert tinted[~inside].sum() < 0.02 * box_area, "colour outside the SEG box"
    ys, xs = np.nonzero(tinted & inside)
    assert abs(ys.min() - top) <= margin and abs(ys.max() + 1 - bottom) <= margin
    assert abs(xs.min() - left) <= margin and abs(xs.max() + 1 - right) <= margin

    plain_rect = _image_rect(plain_view)
    plain_tint = _tinted(plain_view)[plain_rect[0]:plain_rect[2], plain_rect[1]:plain_rect[3]]
    assert plain_tint.sum() < 0.02 * box_area, "the plain MG view should carry no overlay"


def test_ohif_tracks_each_sr_box_as_an_editable_measurement(study) -> None:
    ohif, source, sr, work = study["ohif"], study["source"], study["sr"], study["work"]
    panel, drawn, labels = _tracked_measurements(
        ohif.viewer_url(str(source.StudyInstanceUID), str(sr.SeriesInstanceUID)), work / "ohif_sr_view.html")
    print(f"DOM: {work / 'ohif_sr_view.html'}")
    assert panel == len(SR_BOXES), "OHIF's Measurements panel does not list every SR box as a measurement"
    assert drawn == len(SR_BOXES), "OHIF did not turn every SR box into a tracked RectangleROI measurement"
    # each row names its patch and probability, the unit-less value without a stray "1"
    assert labels == [f"Calcification patch {box['patch']}: probability {box['probability']:.2f}" for box in SR_BOXES]
