"""`CheckedLocalDatastore` keeps MONAI Label's `LocalDatastore` contract, checked side by side.

Both datastores get the same operations on two copies of one studies folder; they must reach the same
status, the same files and the same JSON, apart from PLAID's documented refusals (docs/security.md):
non-mammogram images are not listed, tags and new image ids must be plain names, an existing image is
never replaced, unreadable or mis-sized uploads are refused, and image info carries no server path.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import itk
import numpy as np
import pytest
from monailabel.datastore.local import LocalDatastore
from monailabel.interfaces.exception import ImageNotFoundException, LabelNotFoundException
from PIL import Image

from plaid.errors import PlaidError, PlaidInputError
from plaid.io.label_history import HISTORY_DIR, LabelHistory
from plaid.io.labels import read_label_mask

APP_DIR = Path(__file__).resolve().parents[1] / "apps" / "plaid"
if str(APP_DIR) not in sys.path:
    sys.path.insert(0, str(APP_DIR))

from lib.datastore.local import CheckedLocalDatastore, ImageExistsError  # noqa: E402
from lib.datastore.names import InvalidNameError  # noqa: E402

SHAPE = (256, 240)
RACE_ROUNDS = 300  # a 1% race shows up in 300 rounds with probability 1 - 0.99**300 = 95%


def _image(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    pixels = (rng.random(SHAPE) * 4000).astype(np.uint16)
    Image.fromarray(pixels).save(path)
    return path


def _label(path: Path, seed: int, shape: tuple[int, int] = SHAPE) -> Path:
    mask = (np.random.default_rng(seed).random(shape) > 0.99).astype(np.uint8)
    if path.suffix == ".png":
        Image.fromarray(mask).save(path)
    else:
        itk.imwrite(itk.image_from_array(mask), str(path))
    return path


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    """Two identical studies folders: three PNG mammograms, one labelled, and a NIfTI volume."""
    source = tmp_path / "source"
    (source / "labels" / "final").mkdir(parents=True)
    for number in range(3):
        _image(source / f"case{number}.png", number)
    _label(source / "labels" / "final" / "case0.png", 10)
    (source / "spleen_10.nii.gz").write_bytes(b"\x1f\x8b" + b"\0" * 32)
    copies = tmp_path / "stock", tmp_path / "checked"
    for copy in copies:
        shutil.copytree(source, copy)
    return copies


def _open(stock_dir: Path, checked_dir: Path) -> tuple[LocalDatastore, CheckedLocalDatastore]:
    patterns = ["*.png", "*.tif", "*.tiff", "*.dcm", "*.pgm", "*.nrrd", "*.nii.gz", "*.nii"]
    return (LocalDatastore(str(stock_dir), extensions=patterns),
            CheckedLocalDatastore(str(checked_dir), min_image_size=128))


def _files(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name not in (".lock", *skip)}


def _without_ts(value: Any) -> Any:
    """``value`` without time stamps and the label's ``user`` (documented: PLAID records who saved each label)."""
    if isinstance(value, dict):
        return {k: _without_ts(v) for k, v in value.items() if k not in ("ts", "user")}
    return value


def _json(store: LocalDatastore, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    content = _without_ts(store.json())
    content["objects"] = {k: v for k, v in content["objects"].items() if k not in skip}
    return content


def _same(stock: LocalDatastore, checked: CheckedLocalDatastore, skip: tuple[str, ...] = ("spleen_10",)) -> None:
    """Same status, JSON and files, except the documented non-listing of ``skip`` (non-mammogram ids)."""
    assert _json(stock, skip) == _json(checked)
    stock_status, checked_status = stock.status(), checked.status()
    stock_status["total"] -= sum(1 for image_id in skip if image_id in stock.list_images())
    assert stock_status == checked_status
    stock_files = _files(Path(stock._datastore_path), ("datastore_v2.json",))
    checked_files = _files(Path(checked._datastore_path), ("datastore_v2.json",))
    assert stock_files == {k: v for k, v in checked_files.items() if not k.startswith(HISTORY_DIR)}  # documented


def _outcome(call: Callable[[], Any]) -> Any:
    """The result of ``call``, or the type of the exception it raised."""
    try:
        return call()
    except Exception as exc:  # the contract compares exception types
        return type(exc)


def test_same_state_after_every_operation(folders: tuple[Path, Path], tmp_path: Path) -> None:
    stock, checked = _open(*folders)
    assert "spleen_10" in stock.list_images() and "spleen_10" not in checked.list_images()  # documented
    _same(stock, checked)

    upload = _image(tmp_path / "upload.png", 7)
    assert stock.add_image("case9", str(upload), {"source": "test"}) == checked.add_image(
        "case9", str(upload), {"source": "test"})
    _same(stock, checked)

    png, nrrd = _label(tmp_path / "a.png", 1), _label(tmp_path / "b.nrrd", 2)
    for label in (png, nrrd, png):
        stock_id = stock.save_label("case1", str(label), "final", {})
        assert stock_id == checked.save_label("case1", str(label), "final", {})
        _same(stock, checked)
    for store in (stock, checked):
        store.save_label("case2", str(nrrd), "original", {"model": "calcification"})
        store.update_label_info("case2", "original", {"checked": True})
        store.update_image_info("case2", {"plaid_al_values": {"film_score": 0.5}})
    _same(stock, checked)
    assert checked.get_image_info("case2")["plaid_al_values"] == {"film_score": 0.5}
    assert "path" in stock.get_image_info("case2") and "path" not in checked.get_image_info("case2")  # documented

    for store in (stock, checked):
        store.remove_label("case1", "final")
        store.remove_label("case1", "no_such_tag")
    _same(stock, checked)
    kept = [(v.number, v.event, v.user) for v in LabelHistory(checked._datastore_path).versions("final", "case1")]
    assert kept == [(1, "saved", "anonymous"), (2, "saved", "anonymous"), (3, "saved", "anonymous"),
                    (4, "deleted", "anonymous")]  # every save and the deletion, each file still kept
    for store in (stock, checked):
        store.remove_image("case9")
    _same(stock, checked)

    for folder in folders:  # files dropped in from outside, then a refresh
        _image(folder / "external.png", 5)
        _label(folder / "labels" / "final" / "external.nrrd", 6)
    stock.refresh()
    checked.refresh()
    _same(stock, checked)
    assert checked.datalist() == [
        {k: v.replace(str(folders[0]), str(folders[1])) for k, v in item.items()} for item in stock.datalist()
    ]


def test_same_exception_types(folders: tuple[Path, Path], tmp_path: Path) -> None:
    stock, checked = _open(*folders)
    label = str(_label(tmp_path / "x.nrrd", 3))
    calls: list[Callable[[LocalDatastore], Any]] = [
        lambda s: s.save_label("no_such_image", label, "final", {}),
        lambda s: s.remove_image("no_such_image"),
        lambda s: s.update_image_info("no_such_image", {"a": 1}),
        lambda s: s.update_label_info("case1", "final", {"a": 1}),
        lambda s: s.get_image_uri("no_such_image"),
        lambda s: s.get_label_uri("case1", "final"),
        lambda s: s.get_image_info("no_such_image"),
        lambda s: s.get_labels_by_image_id("no_such_image"),
    ]
    outcomes = [(_outcome(lambda c=call: c(stock)), _outcome(lambda c=call: c(checked))) for call in calls]
    assert [a for a, _ in outcomes] == [b for _, b in outcomes]
    assert outcomes[0][1] is ImageNotFoundException and outcomes[3][1] is LabelNotFoundException
    _same(stock, checked)


def test_documented_refusals_leave_everything_unchanged(folders: tuple[Path, Path], tmp_path: Path) -> None:
    stock, checked = _open(*folders)
    checked_dir = folders[1]
    before = _files(checked_dir)
    label = str(_label(tmp_path / "y.nrrd", 4))
    text = tmp_path / "report.png"
    text.write_text("not an image")
    small = _image(tmp_path / "small.png", 9)
    Image.fromarray(np.zeros((20, 20), dtype=np.uint8)).save(small)
    refusals: list[tuple[Callable[[], Any], type[PlaidError]]] = [
        (lambda: checked.save_label("case1", label, "..", {}), InvalidNameError),
        (lambda: checked.save_label("case1", label, "../..", {}), InvalidNameError),
        (lambda: checked.save_label("case1", label, "/tmp", {}), InvalidNameError),
        (lambda: checked.save_label("case1", label, "final/../../x", {}), InvalidNameError),
        (lambda: checked.save_label("case1", str(_label(tmp_path / "w.nrrd", 1, (20, 20))), "final", {}),
         PlaidInputError),
        (lambda: checked.add_image("../escape", str(small), {}), InvalidNameError),
        (lambda: checked.add_image("report", str(text), {}), PlaidInputError),
        (lambda: checked.add_image("tiny", str(small), {}), PlaidInputError),
        (lambda: checked.add_image("case0", str(_image(tmp_path / "other.png", 8)), {}), ImageExistsError),
    ]
    for call, expected in refusals:
        with pytest.raises(expected):
            call()
    assert _files(checked_dir) == before
    # What stock MONAI Label does with the first of them: the label lands beside the images, outside labels/.
    stock.save_label("case1", label, "..", {})
    assert (folders[0] / "labels" / ".." / "case1.nrrd").is_file() and (folders[0] / "case1.nrrd").is_file()


def _race(store: LocalDatastore, png: Path, nrrd: Path, rounds: int) -> list[str]:
    """Save one .png and one .nrrd label for the same image and tag from two threads, ``rounds`` times;
    returns a description of every round that broke the datastore (exception, or JSON naming a missing
    or unreadable file)."""
    failures: list[str] = []
    label_dir = Path(store._datastore_path) / "labels" / "final"
    for number in range(rounds):
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def save(label: Path, barrier: threading.Barrier = barrier, errors: list[BaseException] = errors) -> None:
            barrier.wait()
            try:
                store.save_label("case1", str(label), "final", {})
            except BaseException as exc:  # recorded and reported below
                errors.append(exc)

        threads = [threading.Thread(target=save, args=(label,)) for label in (png, nrrd)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        ext = store._datastore.objects["case1"].labels["final"].ext
        path = label_dir / f"case1{ext}"
        if errors:
            failures.append(f"round {number}: {errors!r}")
        elif not path.is_file():
            failures.append(f"round {number}: JSON names missing {path.name}")
        else:
            read_label_mask(path, SHAPE)
    return failures


def test_interleaved_png_and_nrrd_saves_never_break_either_datastore(folders: tuple[Path, Path],
                                                                      tmp_path: Path) -> None:
    stock, checked = _open(*folders)
    png, nrrd = _label(tmp_path / "r.png", 11), _label(tmp_path / "r.nrrd", 12)
    assert _race(stock, png, nrrd, RACE_ROUNDS) == []
    assert _race(checked, png, nrrd, RACE_ROUNDS) == []
    for store in (stock, checked):  # the race decides which file wins; one more save makes them comparable
        store.save_label("case1", str(nrrd), "final", {})
    _same(stock, checked)
    assert sorted(p.name for p in (folders[1] / "labels" / "final").iterdir()) == ["case0.png", "case1.nrrd",
                                                                                   "case1.png"]


class _UnreachablePacs:
    """A DICOMweb client stand-in that fails the test if the datastore asks the PACS anything."""

    base_url = "http://127.0.0.1:9/dicom-web"

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the PACS was asked ({name}) before the request was checked")


def test_both_datastores_refuse_the_same_names_and_info_before_writing(folders: tuple[Path, Path],
                                                                       tmp_path: Path) -> None:
    """Issue 21: one name rule (`lib.datastore.names`) for the local and the DICOMweb datastore."""
    from lib.datastore.dicomweb import PlaidDICOMwebDatastore

    _, checked = _open(*folders)
    pacs = PlaidDICOMwebDatastore(_UnreachablePacs(), cache_path=str(tmp_path / "cache"))
    before = _files(tmp_path)
    label = str(_label(tmp_path / "z.nrrd", 5))
    for tag in ("../../../x", "/tmp/x", "final/../../x", "..", ".hidden", "a\\b", "new\nline", "\ud800", "x" * 129):
        for store, image_id in ((checked, "case1"), (pacs, "1.2.3.4")):
            with pytest.raises(InvalidNameError):
                store.save_label(image_id, label, tag, {})
    for store, image_id in ((checked, "case1"), (pacs, "1.2.3.4")):
        for info in ([1], {"ts": "yesterday"}, {"seg_sop_instance_uid": "../x"}, {"a": float("nan")},
                     {"params": [1]}, {"params": "x"}):
            with pytest.raises(PlaidInputError):
                store.save_label(image_id, label, "final", info)  # type: ignore[arg-type]
    with pytest.raises(PlaidInputError):
        checked.update_image_info("case1", {"plaid_al_values": {"film_score": float("inf")}})
    for hostile_id in ("*", "../../x", "1.2.3.4/../5", "1.2." + "3" * 70):
        assert pacs.get_image_uri(hostile_id) == ""  # not a UID: unknown, without a PACS query
    with pytest.raises(PlaidInputError, match="PACS"):
        pacs.add_image("../../x", label, {})
    assert _files(tmp_path) == {**before, "z.nrrd": _files(tmp_path)["z.nrrd"]}
