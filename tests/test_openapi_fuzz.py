"""Schemathesis fuzzing of every operation in MONAI Label's OpenAPI document, against PLAID's live server on 127.0.0.1.

The document is read from the running server's /openapi.json. For each operation Hypothesis draws a bounded,
derandomized set of requests (schemathesis's valid and invalid ones), and the test swaps in values that reach
PLAID's own checks: the served model, strategy and scoring names, stored image ids, label tags, hostile names
(``../``, absolute paths into the site, hidden names, NUL), and JSON ``params`` / ``info`` whose known keys hold
wrong types, NaN, infinities and out-of-range numbers. After every request it asserts:

* no 5xx, and the server process still runs;
* no new ``Traceback`` in the server's log;
* a refused request (4xx), and every DELETE (only ever sent with names the site does not hold), left the
  studies folder, the model folder and the sessions folder exactly as they were, and added no file to the
  server's temporary folder;
* nothing ever appears in the site's ``outside`` folder that hostile names point at.

Background tasks a request starts (training, scoring, batch inference) may run `BACKGROUND_WAIT_S`, are then
stopped, and the test waits until none runs, so no request overlaps one. Training requests never set
``run_sync`` (a synchronous training would hold the request for its whole run). At the end the server still
answers inference and next-sample on stored images (a value stored by an accepted request must not break
later readers), and no temporary file is left behind. Findings are collected over the whole run and reported
together. ``PLAID_FUZZ_EXAMPLES`` sets the examples per operation (default `DEFAULT_EXAMPLES`).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.generation import GenerationMode
from served_site import MODEL_NAME, Site, build_site, file_state, start_site_server, state_changes

from plaid_dev.serving import LabelServer

pytestmark = pytest.mark.server

DEFAULT_EXAMPLES = 12
EXAMPLES = int(os.environ.get("PLAID_FUZZ_EXAMPLES", DEFAULT_EXAMPLES))
REQUEST_TIMEOUT_S = 120
BACKGROUND_WAIT_S = 20
STOP_WAIT_S = 120
FINDINGS_FILE = Path(__file__).resolve().parents[1] / ".fuzz-findings.md"

STRATEGIES = ["random", "first", "film_score"]
SCORING_METHODS = ["active_learning"]
TAGS = ["final", "original"]
# Keys PLAID reads from client JSON: train and infer params, image and label info (strategy records, scores).
KNOWN_KEYS = [
    "epochs", "batch_size", "learning_rate", "frozen_layers", "negative_ratio", "val_fraction", "seed", "device",
    "amp", "augment", "max_negatives_per_image", "multi_gpu", "finetune", "name", "threshold", "label_output",
    "result_extension", "dicom_outputs", "output", "strategy", "plaid_al_values", "ts", "client_id", "model",
    "image", "label_tag", "max_workers", "max_batch_size", "save_label", "logging", "gpus",
]
BAD_SCALARS: list[Any] = [
    math.nan, math.inf, -math.inf, -1, 0, 1, 2**63, -(2**63), 1e308, -1e-308, 1.5, "1", "NaN", "", "x" * 300,
    None, True, False, "../x", "/etc/passwd", "cuda:99", "dicom_seg",
]
BACKGROUND_KINDS = {"/train/": "/train/", "/scoring/": "/scoring/", "/batch/infer/": "/batch/infer"}


def _hostile_names(site: Site) -> list[str]:
    outside = site.root / "outside"
    return ["..", "../x", "../../outside/x", str(outside / "x"), str(outside), "a/b", ".hidden", "x\\y",
            "%2e%2e%2fx", " ", "x" * 300, "nul\x00byte", "datastore_v2.json", f"{MODEL_NAME}.pt"]


def _json_values() -> st.SearchStrategy[Any]:
    """JSON-like values (with NaN and infinities) and objects of PLAID's known keys holding bad values."""
    scalar = st.sampled_from(BAD_SCALARS) | st.floats(allow_nan=True, allow_infinity=True) | st.integers()
    nested = st.recursive(scalar, lambda inner: st.lists(inner, max_size=3)
                          | st.dictionaries(st.sampled_from(KNOWN_KEYS), inner, max_size=3), max_leaves=6)
    known = st.dictionaries(st.sampled_from(KNOWN_KEYS), nested, min_size=1, max_size=4)
    # the strategy record MONAI Label keeps in image info: {"strategy": {"random": {"ts": ...}}}
    strategy_record = st.builds(lambda name, value: {"strategy": {name: {"ts": value, "client_id": value}}},
                                st.sampled_from(STRATEGIES), nested)
    return known | strategy_record | nested


@dataclass
class FuzzRun:
    """The site, its server and what the run found."""

    site: Site
    server: LabelServer
    findings: list[str] = field(default_factory=list)
    requests_sent: int = 0
    log_offset: int = 0
    tmp_at_start: set[str] = field(default_factory=set)
    answers: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    previous: str = ""

    def new_log(self) -> str:
        """The server log written since the last call."""
        with self.site.log_path.open("rb") as log:
            log.seek(self.log_offset)
            text = log.read().decode(errors="replace")
            self.log_offset = log.tell()
        return text

    def protected_state(self) -> dict:
        return file_state(self.site.studies, self.site.model_dir, self.site.sessions)

    def tmp_files(self) -> set[str]:
        return {str(path) for path in self.site.server_tmp.rglob("*") if path.is_file()}

    def record(self, title: str, case: Any, response: Any, detail: str) -> None:
        answer = "" if response is None else f"{response.status_code} {response.text_lossy()[:600]!r}"
        self.findings.append(f"### {title}: {case.operation.label}\n\nrequest:\n```\n{_describe(case)}\n```\n"
                             f"answer: {answer}\n\n```\n{detail[-2500:]}\n```\n")


def _describe(case: Any) -> str:
    try:
        return case.as_curl_command()
    except Exception:  # noqa: BLE001 - a description only; the raw parts do as well
        return f"{case.method} {case.formatted_path} query={case.query!r} body={case.body!r}"[:2000]


@pytest.fixture(scope="module")
def fuzz_run(tmp_path_factory: pytest.TempPathFactory) -> FuzzRun:
    site = build_site(tmp_path_factory.mktemp("fuzz"))
    server = start_site_server(site)
    run = FuzzRun(site=site, server=server)
    run.new_log()
    run.tmp_at_start = run.tmp_files()
    yield run
    server.stop()


def _pick(draw: Callable[[st.SearchStrategy], Any], generated: Any, real: list[str], hostile: list[str]) -> Any:
    """Half the time a real name (when there are any), else a hostile one or schemathesis's own value."""
    branches = [st.sampled_from(real)] * 2 if real else []
    return draw(st.one_of(*branches, st.sampled_from(hostile), st.just(generated)))


def _customise(case: Any, draw: Callable[[st.SearchStrategy], Any], site: Site) -> None:
    """Swap in values that reach PLAID's checks (see the module docstring); DELETEs get no stored names."""
    hostile = _hostile_names(site)
    deleting = case.method.upper() == "DELETE"
    stored = [] if deleting else site.image_ids()
    path = case.operation.path
    parameters = case.path_parameters or {}
    for name, values in (("model", [MODEL_NAME]), ("strategy", STRATEGIES), ("method", SCORING_METHODS),
                         ("session_id", [])):
        if name in parameters:
            parameters[name] = _pick(draw, parameters[name], [] if deleting else values, hostile)
    query = case.query if isinstance(case.query, dict) else None
    names = {parameter.name for parameter in case.operation.query}
    if query is not None:
        for name in ("image", "label", "id"):
            if name in names:
                query[name] = _pick(draw, query.get(name, ""), stored, hostile)
        if "tag" in names:
            query["tag"] = _pick(draw, query.get("tag", ""), TAGS, hostile)
        if path.startswith("/train/") and str(query.get("run_sync", "")).lower() in ("true", "1", "yes", "on", "t"):
            query["run_sync"] = "false"
    body = case.body
    if isinstance(body, dict) and case.media_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
        for name in ("params", "info", "wsi"):
            if name in body or draw(st.booleans()):
                body[name] = draw(st.just(body.get(name, "{}")) | _json_values().map(json.dumps))
        for name, folder in (("file", site.studies), ("label", site.studies / "labels" / "final")):
            stored_png = sorted(folder.glob("*.png"))
            if name in body and stored_png and draw(st.booleans()):
                body[name] = stored_png[0].read_bytes()
    elif case.media_type == "application/json" and draw(st.booleans()):
        value = draw(_json_values())
        case.body = {MODEL_NAME: value} if path == "/train/" and draw(st.booleans()) else value


def _background_kind(path: str) -> str | None:
    return next((stop for prefix, stop in BACKGROUND_KINDS.items() if path.startswith(prefix)), None)


def _settle_background(run: FuzzRun, kind: str) -> str | None:
    """Let the started tasks run up to `BACKGROUND_WAIT_S`, then stop them; None once none is submitted or
    running (MONAI Label lists a task as SUBMITTED until its process starts), else why not."""
    url = run.server.url + kind
    deadline = time.monotonic() + BACKGROUND_WAIT_S
    stop_deadline = deadline + STOP_WAIT_S
    while True:
        answer = requests.get(url, params={"all": "true"}, timeout=REQUEST_TIMEOUT_S)
        if answer.status_code >= 500:
            return f"GET {kind}?all=true answered {answer.status_code}: {answer.text[:300]}"
        tasks = answer.json() if answer.status_code == 200 else []
        if not any(task.get("status") in ("SUBMITTED", "RUNNING") for task in tasks):
            return None
        now = time.monotonic()
        if now > stop_deadline:
            return f"the {kind} tasks still ran {STOP_WAIT_S} s after DELETE {kind}: {tasks}"[:2000]
        if now > deadline:
            stop = requests.delete(url, timeout=REQUEST_TIMEOUT_S)
            if stop.status_code >= 500:
                return f"DELETE {kind} answered {stop.status_code}: {stop.text[:300]}"
        time.sleep(1)


def _send(case: Any, base_url: str) -> Any:
    """Send ``case``; a JSON body goes as written by Python's json (NaN and Infinity literals included)."""
    if case.media_type == "application/json" and isinstance(case.body, (dict, list, str, int, float, bool)):
        raw = json.dumps(case.body, allow_nan=True).encode()
        return case.call(base_url=base_url, timeout=REQUEST_TIMEOUT_S, data=raw)
    return case.call(base_url=base_url, timeout=REQUEST_TIMEOUT_S)


def _check_case(run: FuzzRun, case: Any) -> None:
    """Send one request and record every broken guarantee."""
    site, server = run.site, run.server
    before, tmp_before = run.protected_state(), run.tmp_files()
    run.requests_sent += 1
    try:
        response = _send(case, server.url)
    except requests.RequestException as error:
        response = None
        run.record("no answer", case, None, repr(error))
    run.answers[case.operation.label][response.status_code if response is not None else "none"] += 1
    if response is not None and response.status_code >= 500:
        run.record(f"{response.status_code}", case, response, "")
    kind = _background_kind(case.operation.path)
    if response is not None and response.status_code < 300 and kind and case.method.upper() == "POST":
        problem = _settle_background(run, kind)
        if problem:
            run.record("background task", case, response, problem)
    log = run.new_log()
    if "Traceback" in log:
        # a traceback logged after its answer went out shows up with the next request
        run.record("traceback in the server log", case, response,
                   f"(this request, or the one before: {run.previous[:300]})\n{log[log.index('Traceback') - 400:]}")
    run.previous = _describe(case)
    refused = response is not None and 400 <= response.status_code < 500
    if refused or case.method.upper() == "DELETE":
        changes = state_changes(before, run.protected_state())
        changes += [f"added {path}" for path in sorted(run.tmp_files() - tmp_before)]
        if changes:
            status = response.status_code if response is not None else "no answer"
            run.record(f"{status} changed stored files", case, response, "\n".join(changes))
    if (site.root / "outside").exists():
        run.record("file written outside", case, response, "\n".join(map(str, (site.root / "outside").rglob("*"))))
    assert server.process.poll() is None, f"the server exited after {_describe(case)}:\n{log[-3000:]}"


def _operations(url: str) -> list[Any]:
    """Every operation of the server's OpenAPI document; those that may replace the served model last."""
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    return sorted(operations, key=lambda operation: operation.path.startswith("/model/"))


def _fuzz_operation(run: FuzzRun, operation: Any) -> None:
    cases = st.one_of(operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE))

    @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=cases, data=st.data())
    def fuzz(case: Any, data: st.DataObject) -> None:
        _customise(case, data.draw, run.site)
        _check_case(run, case)

    fuzz()


def _write_findings(findings: list[str], header: str) -> None:
    """Append the findings to `FINDINGS_FILE`, at most two of each kind (title line), with the count of each."""
    kinds = Counter(finding.splitlines()[0] for finding in findings)
    shown: Counter = Counter()
    with FINDINGS_FILE.open("a") as out:
        out.write(f"\n## {header} ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})\n\n")
        out.write("".join(f"- {count} x `{kind[4:]}`\n" for kind, count in kinds.most_common()) + "\n")
        for finding in findings:
            kind = finding.splitlines()[0]
            shown[kind] += 1
            if shown[kind] <= 2:
                out.write(finding + "\n")


def test_every_openapi_operation_gets_no_5xx_and_changes_nothing_when_refused(fuzz_run: FuzzRun) -> None:
    run = fuzz_run
    operations = _operations(run.server.url)
    labels = {operation.label for operation in operations}
    assert len(operations) >= 30 and {"POST /infer/{model}", "PUT /datastore/label", "POST /train/{model}"} <= labels
    started = time.monotonic()
    for operation in operations:
        _fuzz_operation(run, operation)
    after_fuzz = time.monotonic() - started

    image = next(iter(run.site.image_ids()), "")
    probes = [requests.get(f"{run.server.url}/info/", timeout=REQUEST_TIMEOUT_S),
              requests.post(f"{run.server.url}/infer/{MODEL_NAME}", params={"image": image, "output": "json"},
                            timeout=REQUEST_TIMEOUT_S),
              *[requests.post(f"{run.server.url}/activelearning/{name}", json={}, timeout=REQUEST_TIMEOUT_S)
                for name in STRATEGIES]]
    for probe in probes:
        if probe.status_code >= 500:
            request = f"{probe.request.method} {probe.request.url}"
            run.findings.append(f"### {probe.status_code} after the fuzz: {request}\n\n"
                                f"answer: {probe.text[:600]!r} (a value stored during the fuzz breaks later readers)\n")
    time.sleep(2)
    left = sorted(run.tmp_files() - run.tmp_at_start)
    if left:
        run.findings.append("### temporary files left behind by the server\n\n" + "\n".join(left[:50]) + "\n")
    log = run.new_log()
    if "Traceback" in log:
        run.findings.append(f"### traceback after the fuzz\n\n```\n{log[log.index('Traceback') - 400:][:2500]}\n```\n")
    print(f"fuzz: {len(operations)} operations, {run.requests_sent} requests, {EXAMPLES} examples per operation "
          f"and mode mix, {after_fuzz:.0f} s, {len(run.findings)} findings")
    for label, counts in sorted(run.answers.items()):
        print(f"  {label}: {dict(sorted(counts.items(), key=str))}")
    if run.findings:
        _write_findings(run.findings, f"test_openapi_fuzz: {len(run.findings)} findings")
    assert run.server.healthy()
    assert not run.findings, "\n".join(run.findings)[:20000]
