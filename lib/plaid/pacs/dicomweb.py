"""DICOMweb access for PLAID: a client with optional basic auth, QIDO-RS listing, WADO-RS retrieval and
STOW-RS storage, with every transport failure turned into one `PacsError` that names the server."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import requests
from pydicom.dataset import Dataset

from plaid.errors import PlaidError, PlaidInputError

logger = logging.getLogger(__name__)

MG = "MG"
SEG = "SEG"
# Attributes QIDO-RS is asked for, besides the default ones, to describe each instance.
INSTANCE_FIELDS = ("Modality", "NumberOfFrames", "Rows", "Columns", "SeriesDescription", "ContentDate",
                   "ContentTime")


class PacsError(PlaidError):
    """The PACS is unreachable or answered a DICOMweb request with an error."""


class PacsInputError(PlaidInputError):
    """The PACS holds something PLAID cannot use for this request (wrong modality, several frames...)."""


def make_client(url: str, username: str = "", password: str = "", timeout_s: float = 30.0):
    """A DICOMweb client for ``url`` (the DICOMweb root), with basic auth when a user name is given."""
    from dicomweb_client import DICOMwebClient
    from dicomweb_client.session_utils import create_session_from_user_pass

    session = create_session_from_user_pass(username, password) if username else requests.Session()
    session.request = _with_timeout(session.request, timeout_s)  # type: ignore[method-assign]
    client = DICOMwebClient(url=url.rstrip("/"), session=session)
    # dicomweb-client retries every failure 5 times with exponential back-off (30 s for a refused
    # connection); a PACS that is down must be reported at once.
    client.set_http_retry_params(retry=False)
    return client


def _with_timeout(request, timeout_s: float):
    """Wrap ``Session.request`` so every call has a timeout (dicomweb-client sets none)."""

    def call(method: str, url: str, **kwargs: Any):
        kwargs.setdefault("timeout", timeout_s)
        return request(method, url, **kwargs)

    return call


def _guarded(action: str, client, call, *args: Any, **kwargs: Any):
    """Run one client call; connection failures and HTTP errors become a `PacsError` naming the server."""
    try:
        return call(*args, **kwargs)
    except requests.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        raise PacsError(f"PACS {client.base_url} refused {action} (HTTP {status})") from exc
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise PacsError(f"PACS {client.base_url} is unreachable during {action}: {type(exc).__name__}") from exc


@dataclass
class InstanceRecord:
    """What QIDO-RS says about one instance."""

    study_uid: str
    series_uid: str
    sop_uid: str
    modality: str = ""
    frames: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> InstanceRecord:
        """Parse one DICOM JSON result of a QIDO-RS instance search."""
        ds = Dataset.from_json(item)
        return cls(
            study_uid=str(ds.get("StudyInstanceUID", "")), series_uid=str(ds.get("SeriesInstanceUID", "")),
            sop_uid=str(ds.get("SOPInstanceUID", "")), modality=str(ds.get("Modality", "") or ""),
            frames=int(ds.get("NumberOfFrames", 1) or 1),
            extra={key: str(ds.get(key, "") or "") for key in ("SeriesDescription", "ContentDate", "ContentTime")},
        )


def search_instances(client, filters: dict[str, Any] | None = None) -> list[InstanceRecord]:
    """Every instance matching ``filters`` (QIDO-RS, all pages)."""
    found = _guarded("an instance search", client, client.search_for_instances, search_filters=dict(filters or {}),
                     fields=list(INSTANCE_FIELDS), get_remaining=True)
    return [InstanceRecord.from_json(item) for item in found]


def instance_metadata(client, record: InstanceRecord) -> Dataset:
    """The instance's header (WADO-RS metadata, no bulk data)."""
    items = _guarded("a metadata request", client, client.retrieve_instance_metadata,
                     record.study_uid, record.series_uid, record.sop_uid)
    return Dataset.from_json(items)


def retrieve(client, record: InstanceRecord) -> Dataset:
    """The whole instance (WADO-RS)."""
    return _guarded("an instance retrieval", client, client.retrieve_instance,
                    record.study_uid, record.series_uid, record.sop_uid)


def store(client, datasets: list[Dataset]) -> list[str]:
    """STOW-RS the datasets; returns their SOPInstanceUIDs once the PACS confirms them."""
    response = _guarded("a store (STOW-RS)", client, client.store_instances, datasets)
    failed = response.get("FailedSOPSequence") if response is not None else None
    if failed:
        reasons = [str(item.get("FailureReason", "?")) for item in failed]
        raise PacsError(f"PACS {client.base_url} rejected {len(failed)} instance(s) (failure reasons {reasons})")
    return [str(ds.SOPInstanceUID) for ds in datasets]
