"""Browser test: headless Chromium opens the served OHIF on a study holding PLAID's SEG and SR and reads, from the
rendered page, what a radiologist sees.

The film is a right CC stored MONOCHROME1: a dark background on the left quarter (display value near 0)
and, from there to the chest wall on the right, grey tissue everywhere (so its displayed rectangle can be
found in the screenshot). The SEG holds one segment per positive patch, clipped to the breast
(`plaid.pacs.seg.patch_segments` with PLAID's tissue mask): one box inside the tissue and one across the
skin line. OHIF tints segment pixels with the segment colour, so in the SEG view coloured pixels must fill
the clipped boxes (relative to the displayed tissue) and stay off the background; the plain MG view has
none. Opening the SR hydrates it into OHIF's measurement tracking: each box becomes a tracked rectangle
listed in the Measurements panel. From the page: laterality and view ("R CC") on every view, no onboarding
tour, no statistics text over PLAID's rectangles, panel rows holding only label and probability, the
Segmentation panel open with the probability-named segments, and the MONOCHROME1 thumbnail with a dark
background. Screenshots and the page's DOM of each view are kept in the test's tmp folder (printed).
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from plaid.io.dicom import write_dicom_mammogram
from plaid.io.images import read_mammogram
from plaid.pacs import dicomweb
from plaid.pacs.seg import SeriesInfo, box_label, patch_segments, write_seg
from plaid.pacs.sr import write_sr
from plaid.patches.tissue import tissue_mask
from plaid_dev.ohif import OhifUnavailable, ensure_ohif, start_ohif
from plaid_dev.orthanc import orthanc_missing, start_orthanc

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.server,
    pytest.mark.skipif(orthanc_missing() is not None, reason=f"Orthanc unavailable: {orthanc_missing()}"),
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)"),
]

ROWS, COLUMNS = 896, 672
BACKGROUND = 168  # columns left of this are background: a right breast's skin side
WINDOW = (1280, 900)
SEG_PATCHES = [{"patch": 5, "box": [504, 300, 728, 524], "probability": 0.83},  # inside the tissue
               {"patch": 2, "box": [150, 60, 374, 284], "probability": 0.57}]  # across the skin line
SR_BOXES = [{"patch": 3, "box": [100, 250, 324, 474], "probability": 0.91},
            {"patch": 7, "box": [400, 400, 624, 624], "probability": 0.6}]
STATISTICS = re.compile(r"Area:|Mean:|Max:|Min:|Std Dev:|mm²|Pathologic calcification")


def _chromium(url: str, budget_ms: int, *action: str, cwd: Path) -> str:
    """Run headless Chromium on ``url`` for ``budget_ms`` of virtual time with ``action``; its stdout."""
    command = [CHROMIUM, "--headless=new", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
               "--disable-dev-shm-usage", f"--window-size={WINDOW[0]},{WINDOW[1]}",
               f"--virtual-time-budget={budget_ms}", *action, url]
    return subprocess.run(command, check=True, timeout=180, capture_output=True, cwd=cwd, text=True).stdout


def _view(url: str, out: Path, ready) -> tuple[np.ndarray, str]:
    """Screenshot (RGB array) and DOM of ``url``, kept as ``out``.png / .html, once ``ready(rgb, dom)`` holds;
    three tries, longer each time."""
    for budget_ms in (30000, 60000, 90000):
        _chromium(url, budget_ms, f"--screenshot={out.with_suffix('.png')}", cwd=out.parent)
        rgb = np.asarray(Image.open(out.with_suffix(".png")).convert("RGB")).astype(int)
        dom = _chromium(url, budget_ms, "--dump-dom", cwd=out.parent)
        out.with_suffix(".html").write_text(dom)
        if ready(rgb, dom):
            break
    return rgb, dom


def _text(dom: str) -> str:
    """The page's visible text, tags dropped, entities decoded."""
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", "\n", body))


def _overlay(dom: str, title: str) -> list[str]:
    """The texts of the viewport overlay items with this title (one per viewport showing it)."""
    return [html.unescape(re.sub(r"<[^>]+>", "", item)).strip()
            for item in re.findall(rf'title="{re.escape(title)}"[^>]*>(.*?)</div>', dom, flags=re.S)]


def _image_rect(rgb: np.ndarray) -> tuple[int, int, int, int] | None:
    """Bounding box (top, left, bottom, right) of the grey tissue in the viewport area (right of the side panel)."""
    grey = (np.abs(rgb[..., 0] - rgb[..., 1]) < 6) & (np.abs(rgb[..., 1] - rgb[..., 2]) < 6) & (rgb[..., 1] > 45)
    grey[:, : rgb.shape[1] // 4] = False
    # the tissue is hundreds of pixels wide and tall; grey toolbar icons and text are not
    rows, columns = np.flatnonzero(grey.sum(axis=1) > 150), np.flatnonzero(grey.sum(axis=0) > 150)
    if rows.size == 0 or columns.size == 0:
        return None
    return int(rows[0]), int(columns[0]), int(rows[-1]) + 1, int(columns[-1]) + 1


def _tinted(rgb: np.ndarray) -> np.ndarray:
    """Pixels clearly coloured by a segment colour (grey and black pixels have R = G = B)."""
    return (np.max(rgb, axis=-1) - np.min(rgb, axis=-1)) > 25


def _tinted_film(rgb: np.ndarray) -> int:
    """How many pixels of the displayed tissue are tinted (0 when no film is on screen)."""
    rect = _image_rect(rgb)
    return int(_tinted(rgb)[rect[0]:rect[2], rect[1]:rect[3]].sum()) if rect else 0


def _on_screen(rect: tuple[int, int, int, int], box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """An image box (top, left, bottom, right) in screenshot pixels, from the displayed tissue's rectangle."""
    top, left, bottom, right = rect
    scale_y, scale_x = (bottom - top) / ROWS, (right - left) / (COLUMNS - BACKGROUND)
    return (round(top + box[0] * scale_y), round(left + (box[1] - BACKGROUND) * scale_x),
            round(top + box[2] * scale_y), round(left + (box[3] - BACKGROUND) * scale_x))


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory):
    """Orthanc + OHIF serving one MONOCHROME1 right CC, PLAID's SEG of two patches on it and its SR."""
    try:
        dist = ensure_ohif()
    except OhifUnavailable as exc:
        pytest.skip(str(exc))
    work = tmp_path_factory.mktemp("ohif")
    yy, xx = np.mgrid[0:ROWS, 0:COLUMNS]
    pixels = 1400 + 800 * (yy / ROWS) + 400 * (xx / COLUMNS)  # grey tissue from edge to edge...
    pixels[:, :BACKGROUND] = 20  # ...but for the background on the skin side
    path = write_dicom_mammogram(work / "mg.dcm", pixels, bits_stored=12, laterality="R",
                                 view="CC", patient_id="OHIFTEST", monochrome1=True)
    source = pydicom.dcmread(path)
    tissue = tissue_mask(read_mammogram(path).pixels)
    layers, labels = patch_segments(np.zeros((ROWS, COLUMNS), dtype=bool), SEG_PATCHES, tissue)
    seg = write_seg(source, layers, SeriesInfo("PLAID calcification (AI)"), labels=labels)
    sr = write_sr(source, SR_BOXES, SeriesInfo("PLAID calcification report (AI)", number=9002))
    orthanc = start_orthanc(users={"viewer": "pw"}, log_path=work / "orthanc.log")
    orthanc.upload(path)
    dicomweb.store(dicomweb.make_client(orthanc.dicomweb_url, "viewer", "pw"), [seg, sr])
    ohif = start_ohif(orthanc.url, ("viewer", "pw"), dist=dist)
    print(f"screenshots and DOM of each view: {work}")
    yield {"ohif": ohif, "source": source, "seg": seg, "sr": sr, "work": work, "layers": layers}
    ohif.stop()
    orthanc.stop()


def _url(study: dict, series: str) -> str:
    return study["ohif"].viewer_url(str(study["source"].StudyInstanceUID), str(study[series].SeriesInstanceUID))


def _common_checks(dom: str) -> None:
    """What every view shows: laterality and view on the film, no onboarding tour."""
    assert "R CC" in _overlay(dom, "Laterality and view"), "laterality and view are not on the film"
    assert "P\\L" in _overlay(dom, "Patient Orientation (row direction \\ column direction)")
    assert "Scrolling Through Images" not in dom and "shepherd-element" not in dom, "the onboarding tour shows"


def _thumbnail(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Rows and columns of the thumbnail's grey tissue in the study browser (left panel), None when absent."""
    panel = rgb[:, : rgb.shape[1] // 4]
    grey = (np.abs(panel[..., 0] - panel[..., 2]) < 6) & (panel[..., 1] > 45)
    rows = np.flatnonzero(grey.sum(axis=1) > 40)
    if rows.size == 0:
        return None
    # the thumbnail is the longest run of such rows (a line of text is a few rows)
    rows = max(np.split(rows, np.flatnonzero(np.diff(rows) > 1) + 1), key=len)
    columns = np.flatnonzero(grey[rows].sum(axis=0) > len(rows) // 2)
    return (rows, columns) if len(rows) > 60 and len(columns) > 30 else None


def _thumbnail_check(rgb: np.ndarray) -> tuple[float, int, bool]:
    """The MONOCHROME1 thumbnail: the median brightness left of its film, how many of its columns are a uniform
    white band (the background drawn from stored values) and whether its tissue brightens toward the right
    (as displayed: 400 more toward the chest wall)."""
    found = _thumbnail(rgb)
    assert found is not None, "no thumbnail of the film in the study browser"
    rows, columns = found
    block = rgb[rows[0]:rows[-1] + 1, columns[0]:columns[-1] + 1].mean(axis=-1)
    profile = np.median(block, axis=0)
    width = round(len(profile) * BACKGROUND / (COLUMNS - BACKGROUND))
    left = rgb[rows[0]:rows[-1] + 1, max(columns[0] - width, 0):columns[0] - 2]
    return float(np.median(left)), int((profile > 235).sum()), bool(profile[-5:].mean() > profile[:5].mean())


def _segments_on_screen(rgb: np.ndarray, study: dict) -> tuple[np.ndarray, list[tuple[tuple[int, ...], float]]]:
    """The tinted pixels over the film, and each SEG segment's box on screen with the share of it that is tinted."""
    rect = _image_rect(rgb)
    assert rect is not None and rect[2] - rect[0] > 200 and rect[3] - rect[1] > 150, "no film on screen"
    tinted = _tinted(rgb)
    tinted[: rect[0]], tinted[rect[2]:], tinted[:, rect[3]:] = False, False, False
    tinted[:, : rect[1] - round((rect[3] - rect[1]) * BACKGROUND / (COLUMNS - BACKGROUND)) - 4] = False
    boxes = []
    for layer in study["layers"]:
        rows, columns = np.flatnonzero(layer.any(axis=1)), np.flatnonzero(layer.any(axis=0))
        box = _on_screen(rect, (rows[0], columns[0], rows[-1] + 1, columns[-1] + 1))
        boxes.append((box, float(tinted[box[0]:box[2], box[1]:box[3]].mean())))
    return tinted, boxes


def test_ohif_seg_view_shows_clipped_probability_named_segments(study: dict) -> None:
    labels = [box_label(entry["patch"], entry["probability"]) for entry in SEG_PATCHES]

    def ready(rgb: np.ndarray, dom: str) -> bool:  # every segment painted, not only the first ones
        return (_tinted_film(rgb) > 100 and all(label in dom for label in labels) and _image_rect(rgb) is not None
                and all(drawn > 0.5 for _, drawn in _segments_on_screen(rgb, study)[1]))

    rgb, dom = _view(_url(study, "seg"), study["work"] / "ohif_seg_view", ready)
    _common_checks(dom)
    text = _text(dom)
    assert "Segmentations" in text and all(label in text for label in labels), "the SEG panel is not open"
    rect = _image_rect(rgb)
    tinted, boxes = _segments_on_screen(rgb, study)
    expected = np.zeros_like(tinted)
    margin = 4
    for (top, left, bottom, right), drawn in boxes:
        assert drawn > 0.5, f"segment at {top, left, bottom, right} is not drawn"
        expected[top - margin:bottom + margin, left - margin:right + margin] = True
    assert tinted[~expected].sum() < 0.02 * expected.sum(), "colour outside the segments (over the background?)"
    assert tinted[:, : rect[1] - margin].sum() < 0.01 * expected.sum(), "a segment extends over the background"


def test_ohif_mg_view_shows_the_film_without_overlay_and_a_dark_thumbnail(study: dict) -> None:
    rgb, dom = _view(_url(study, "source"), study["work"] / "ohif_mg_view",
                     lambda rgb, dom: _image_rect(rgb) is not None and _thumbnail(rgb) is not None)
    _common_checks(dom)
    rect = _image_rect(rgb)
    assert rect is not None and rect[2] - rect[0] > 200 and rect[3] - rect[1] > 150, "no film on screen"
    assert _tinted(rgb)[rect[0]:rect[2], rect[1]:rect[3]].mean() < 0.01, "the plain MG view carries an overlay"
    background, white_columns, brightens_right = _thumbnail_check(rgb)
    assert background < 40 and white_columns == 0, "MONOCHROME1 thumbnail background is bright: stored values shown"
    assert brightens_right, "MONOCHROME1 thumbnail tissue is inverted"


def test_ohif_tracks_each_sr_box_with_only_its_label(study: dict) -> None:
    labels = [box_label(box["patch"], box["probability"]) for box in SR_BOXES]
    rgb, dom = _view(_url(study, "sr"), study["work"] / "ohif_sr_view",
                     lambda rgb, dom: f"Measurements ({len(SR_BOXES)})" in dom and dom.count(labels[0]) >= 2)
    _common_checks(dom)
    counts = re.findall(r"<span>Measurements \((\d+)\)</span>", dom)
    assert counts == [str(len(SR_BOXES))], "OHIF's Measurements panel does not list every SR box"
    # each box is drawn as a tracked rectangle whose text is its label (in the SVG), and is a panel row
    drawn = re.findall(r"<text[^>]*>.*?</text>", dom, flags=re.S)
    assert sorted(label for label in labels if any(label in item for item in drawn)) == sorted(labels)
    rows = re.findall(r">(Calcification patch [^<]*)<", re.sub(r"<text[^>]*>.*?</text>", "", dom, flags=re.S))
    assert rows == labels, "panel rows are not the labels"
    assert not STATISTICS.search(_text(dom)), f"statistics shown: {STATISTICS.search(_text(dom)).group(0)}"
    assert _image_rect(rgb) is not None
