"""Load on loopback: 8 annotator clients against PLAID's live MONAI Label server, each looping next sample ->
inference -> label save for ``PLAID_LOAD_SECONDS`` (default `DEFAULT_SECONDS`; docs/security.md gives the
figures of a 2-minute run and its command).

Asserts every request answered 200, the server still runs with no traceback in its log, and its resident
memory (server and child processes, from /proc) grew by at most `RSS_GROWTH_LIMIT_BYTES` between a warm-up
and the end. Prints the figures: requests per kind, p50/p95 latency, RSS before and after.
"""

from __future__ import annotations

import io
import json
import os
import threading
import time
from collections import defaultdict

import numpy as np
import pytest
import requests
from PIL import Image
from served_site import MODEL_NAME, Site, build_site, server_rss_bytes, start_site_server

from plaid_dev.serving import LabelServer

pytestmark = pytest.mark.server

CLIENTS = 8
DEFAULT_SECONDS = 30
SECONDS = float(os.environ.get("PLAID_LOAD_SECONDS", DEFAULT_SECONDS))
REQUEST_TIMEOUT_S = 120
RSS_GROWTH_LIMIT_BYTES = 128 * 2**20
IMAGE_COUNT = 6


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    return build_site(tmp_path_factory.mktemp("load"), count=IMAGE_COUNT)


@pytest.fixture(scope="module")
def server(site: Site) -> LabelServer:
    handle = start_site_server(site)
    yield handle
    handle.stop()


def _mask_png(shape: tuple[int, int], seed: int) -> bytes:
    """A label of ``shape``: a small square at a seeded place."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(shape, dtype=np.uint8)
    row, col = rng.integers(0, shape[0] - 8), rng.integers(0, shape[1] - 8)
    mask[row:row + 8, col:col + 8] = 1
    buffer = io.BytesIO()
    Image.fromarray(mask).save(buffer, format="PNG")
    return buffer.getvalue()


class LoadRecord:
    """Latencies per request kind and the failures, shared by the client threads."""

    def __init__(self) -> None:
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.errors: list[str] = []
        self.lock = threading.Lock()

    def timed(self, kind: str, session: requests.Session, method: str, url: str, **kwargs: object) -> dict | None:
        """Send one request, note its latency (or failure); the JSON answer of a 200, else None."""
        started = time.perf_counter()
        try:
            response = session.request(method, url, timeout=REQUEST_TIMEOUT_S, **kwargs)
        except requests.RequestException as error:
            with self.lock:
                self.errors.append(f"{kind}: {error!r}")
            return None
        elapsed = time.perf_counter() - started
        with self.lock:
            self.latencies[kind].append(elapsed)
            if response.status_code != 200:
                self.errors.append(f"{kind}: {response.status_code} {response.text[:300]}")
        return response.json() if response.status_code == 200 else None


def _annotator(server: LabelServer, image_ids: list[str], shape: tuple[int, int], client: int, deadline: float,
               record: LoadRecord) -> None:
    """One client: next sample, inference on it, a label save for it, until ``deadline``."""
    rng = np.random.default_rng(client)
    with requests.Session() as session:
        step = 0
        while time.monotonic() < deadline:
            step += 1
            sample = record.timed("next_sample", session, "POST", f"{server.url}/activelearning/random",
                                  json={"client_id": f"load-{client}"})
            image = (sample or {}).get("id") or str(rng.choice(image_ids))
            record.timed("infer", session, "POST", f"{server.url}/infer/{MODEL_NAME}",
                         params={"image": image, "output": "json"}, data={"params": json.dumps({})})
            record.timed("save_label", session, "PUT", f"{server.url}/datastore/label",
                         params={"image": image, "tag": "final"}, data={"params": "{}"},
                         files={"label": ("label.png", _mask_png(shape, client * 100_000 + step))})


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def test_eight_clients_mixing_inference_next_sample_and_label_saves(server: LabelServer, site: Site) -> None:
    image_ids = site.image_ids()
    shape = Image.open(next(site.studies.glob("*.png"))).size[::-1]
    warm = LoadRecord()
    _annotator(server, image_ids, shape, client=99, deadline=time.monotonic() + 5, record=warm)
    assert not warm.errors, warm.errors
    log_start = site.log_path.stat().st_size
    rss_before = server_rss_bytes(server)

    record = LoadRecord()
    started = time.monotonic()
    deadline = started + SECONDS
    threads = [threading.Thread(target=_annotator, args=(server, image_ids, shape, client, deadline, record))
               for client in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(SECONDS + 2 * REQUEST_TIMEOUT_S)
    elapsed = time.monotonic() - started
    rss_after = server_rss_bytes(server)

    total = sum(len(values) for values in record.latencies.values())
    every = [value for values in record.latencies.values() for value in values]
    lines = [f"load: {CLIENTS} clients, {elapsed:.0f} s, {total} requests ({total / elapsed:.1f}/s), "
             f"p95 {_percentile(every, 95) * 1000:.0f} ms, RSS {rss_before / 2**20:.0f} -> {rss_after / 2**20:.0f} MiB"]
    for kind, values in sorted(record.latencies.items()):
        lines.append(f"  {kind}: {len(values)} requests, p50 {_percentile(values, 50) * 1000:.0f} ms, "
                     f"p95 {_percentile(values, 95) * 1000:.0f} ms")
    print("\n".join(lines))

    assert not any(thread.is_alive() for thread in threads), "a client did not finish"
    assert not record.errors, record.errors[:20]
    assert server.healthy()
    log = site.log_path.read_bytes()[log_start:].decode(errors="replace")
    assert "Traceback" not in log, log[log.find("Traceback") - 400:][:3000]
    assert {"next_sample", "infer", "save_label"} <= record.latencies.keys()
    assert min(len(values) for values in record.latencies.values()) >= CLIENTS
    assert rss_after - rss_before <= RSS_GROWTH_LIMIT_BYTES, lines[0]
