"""Build PLAID's DICOMweb datastore from MONAI Label's settings and the app's --conf options.

--conf keys: ``dicomweb_modality`` (MG), ``dicomweb_refresh_s`` (10), ``dicomweb_auto_scoring``
(false: active-learning scoring would download every listed study at startup and after each label; run
POST /scoring/active_learning when wanted). Credentials come from a file or the environment
(`lib.datastore.pacs_credentials`), the cache folder from MONAI_LABEL_DATASTORE_CACHE_PATH (or
MONAI_LABEL_DICOMWEB_CACHE_PATH).
"""

from __future__ import annotations

import logging

from monailabel.config import settings

from lib.datastore.dicomweb import PlaidDICOMwebDatastore
from lib.datastore.pacs_credentials import pacs_credentials
from plaid.options import parse_bool
from plaid.pacs.dicomweb import make_client

logger = logging.getLogger(__name__)


def init_dicomweb_datastore(url: str, conf: dict[str, str]) -> PlaidDICOMwebDatastore:
    """The datastore for ``url``; turns MONAI Label's automatic scoring off unless asked for."""
    username, password = pacs_credentials(url)
    cache = (settings.MONAI_LABEL_DATASTORE_CACHE_PATH or settings.MONAI_LABEL_DICOMWEB_CACHE_PATH or "").strip()
    if not parse_bool(conf.get("dicomweb_auto_scoring", "false")):
        # Read by MONAILabelApp.__init__ right after init_datastore.
        settings.MONAI_LABEL_AUTO_UPDATE_SCORING = False
        logger.info("automatic scoring is off for the DICOMweb datastore (--conf dicomweb_auto_scoring true)")
    return PlaidDICOMwebDatastore(
        make_client(url, username, password, timeout_s=settings.MONAI_LABEL_DICOMWEB_PROXY_TIMEOUT),
        search_filter={"Modality": conf.get("dicomweb_modality", "MG")},
        cache_path=cache or None,
        refresh_s=float(conf.get("dicomweb_refresh_s", 10)),
        min_image_size=int(conf.get("patch_size") or 224),
    )
