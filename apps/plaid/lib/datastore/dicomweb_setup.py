"""Build PLAID's DICOMweb datastore from MONAI Label's settings and the app's --conf options.

Its --conf keys (``dicomweb_modality``, ``dicomweb_refresh_s``, ``dicomweb_auto_scoring``) are described in
`lib.conf_keys.AppConf`. Credentials come from a file or the environment
(`lib.datastore.pacs_credentials`), the cache folder from MONAI_LABEL_DATASTORE_CACHE_PATH (or
MONAI_LABEL_DICOMWEB_CACHE_PATH).
"""

from __future__ import annotations

import logging

from monailabel.config import settings

from lib.conf_keys import APP_DEFAULTS
from lib.datastore.dicomweb import PlaidDICOMwebDatastore
from lib.datastore.pacs_credentials import pacs_credentials
from plaid.options import parse_bool
from plaid.pacs.dicomweb import make_client

logger = logging.getLogger(__name__)


def init_dicomweb_datastore(url: str, conf: dict[str, str]) -> PlaidDICOMwebDatastore:
    """The datastore for ``url``; turns MONAI Label's automatic scoring off unless asked for."""
    username, password = pacs_credentials(url)
    cache = (settings.MONAI_LABEL_DATASTORE_CACHE_PATH or settings.MONAI_LABEL_DICOMWEB_CACHE_PATH or "").strip()
    if not parse_bool(conf.get("dicomweb_auto_scoring", APP_DEFAULTS.dicomweb_auto_scoring)):
        # Read by MONAILabelApp.__init__ right after init_datastore.
        settings.MONAI_LABEL_AUTO_UPDATE_SCORING = False
        logger.info("automatic scoring is off for the DICOMweb datastore (--conf dicomweb_auto_scoring true)")
    return PlaidDICOMwebDatastore(
        make_client(url, username, password, timeout_s=settings.MONAI_LABEL_DICOMWEB_PROXY_TIMEOUT),
        search_filter={"Modality": conf.get("dicomweb_modality", APP_DEFAULTS.dicomweb_modality)},
        cache_path=cache or None,
        refresh_s=float(conf.get("dicomweb_refresh_s", APP_DEFAULTS.dicomweb_refresh_s)),
        min_image_size=int(conf.get("patch_size") or 224),
    )
