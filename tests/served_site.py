"""A small PLAID site for the fuzz and load tests: studies, a published tiny model, and its server on loopback.

Every place the server may write lives under one root, so a test can tell what a request changed: the
studies folder, the model folder, MONAI Label's sessions folder and the server's own temporary folder
(``TMPDIR``). `FileState` records those folders; `server_rss_bytes` reads the server's memory from /proc.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from plaid.model.checkpoint import save_checkpoint
from plaid.model.network import build_model
from plaid.synth.datasets import generate_dataset
from plaid_dev.serving import LabelServer, start_label_server

MODEL_NAME = "calcification"
UNLABELLED = 2


@dataclass(frozen=True)
class Site:
    """The folders of one test site (all under ``root``)."""

    root: Path

    @property
    def studies(self) -> Path:
        return self.root / "studies"

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def sessions(self) -> Path:
        return self.root / "sessions"

    @property
    def server_tmp(self) -> Path:
        return self.root / "server-tmp"

    @property
    def log_path(self) -> Path:
        return self.root / "server.log"

    def image_ids(self) -> list[str]:
        """Ids of the mammograms in the studies folder."""
        return sorted(path.name.split(".")[0] for path in self.studies.iterdir() if path.suffix in (".png", ".dcm"))


def build_site(root: Path, count: int = 4, seed: int = 5) -> Site:
    """Write ``count`` small synthetic mammograms (the last `UNLABELLED` without a final label) and publish a
    randomly initialised ResNet18 as the served model, so inference runs without any training first."""
    site = Site(root)
    rows = generate_dataset(site.studies, count=count, seed=seed, height=448, width=448, calcified_fraction=1.0)
    for row in rows[-UNLABELLED:]:
        (site.studies / "labels" / "final" / f"{row['image_id']}.png").unlink()
    torch.manual_seed(seed)
    model = build_model(frozen_layers=0, pretrained=False, architecture="resnet18", offline=True).eval()
    save_checkpoint(site.model_dir / f"{MODEL_NAME}.pt", model, epoch=1, threshold=0.5)
    for folder in (site.sessions, site.server_tmp):
        folder.mkdir(parents=True, exist_ok=True)
    return site


def start_site_server(site: Site, env: dict[str, str] | None = None, token: str | None = None,
                      tls: tuple[Path, Path, Path] | None = None) -> LabelServer:
    """MONAI Label serving ``site`` on 127.0.0.1: CPU, one-epoch training of small batches, no scoring after
    each next-sample request, sessions and temporary files kept under the site root; ``env`` adds variables
    (login settings), ``token`` is what the start-up check sends, ``tls`` (certificate, key, CA) serves HTTPS."""
    return start_label_server(
        site.studies,
        conf={"model_dir": str(site.model_dir), "epochs": "1", "batch_size": "8", "device": "cpu",
              "architecture": "resnet18", "frozen_layers": "0"},
        log_path=site.log_path,
        env={"MONAI_LABEL_AUTO_UPDATE_SCORING": "false", "MONAI_LABEL_SESSION_PATH": str(site.sessions),
             "TMPDIR": str(site.server_tmp), "CUDA_VISIBLE_DEVICES": "", **(env or {})},
        token=token,
        tls=tls,
    )


FileState = dict[str, tuple[int, int, int]]


def file_state(*folders: Path) -> FileState:
    """Size, modification time and inode of every file under ``folders`` (MONAI Label's lock files aside):
    a file written, replaced or removed changes the state."""
    state: FileState = {}
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.name != ".lock":
                info = path.stat()
                state[str(path)] = (info.st_size, info.st_mtime_ns, info.st_ino)
    return state


def state_changes(before: FileState, after: FileState) -> list[str]:
    """What differs between two `file_state` results, one line per file."""
    lines = [f"added {path}" for path in sorted(after.keys() - before.keys())]
    lines += [f"removed {path}" for path in sorted(before.keys() - after.keys())]
    lines += [f"changed {path}" for path in sorted(before.keys() & after.keys()) if before[path] != after[path]]
    return lines


def server_rss_bytes(server: LabelServer) -> int:
    """Resident memory of the server process and its children (MONAI Label's task processes), from /proc."""
    total = 0
    for pid in [server.process.pid, *_descendants(server.process.pid)]:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def _descendants(pid: int) -> list[int]:
    children: list[int] = []
    try:
        direct = [int(child) for task in os.listdir(f"/proc/{pid}/task")
                  for child in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
    except OSError:
        return children
    for child in direct:
        children += [child, *_descendants(child)]
    return children
