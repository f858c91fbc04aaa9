"""The ``app-config.js`` PLAID serves OHIF with: what a radiologist sees when a PLAID study opens.

One DICOMweb data source on the serving origin (Orthanc behind `plaid_dev.ohif`'s proxy), and:

- laterality and view ("R CC") and the Patient Orientation in the viewport's top-right corner
  (``viewportOverlay.topRight``; the top-left keeps OHIF's date and series description);
- no onboarding tour (``ohif.tours`` emptied: it dimmed the page and covered the film on every load);
- thumbnails from Orthanc's ``/rendered`` endpoint, which applies the photometric interpretation (OHIF's
  own ``wadors`` thumbnail draws a MONOCHROME1 film from its stored values, background white);
- PLAID's SR opens straight away as tracked rectangles drawn with their label ("Calcification patch 12:
  probability 0.52") and nothing else: the longitudinal mode's tool groups are set up as OHIF's mode does
  (``initToolGroups``, which OHIF lets a mode configuration replace), then PLAID's boxes get their label
  for text and a Measurements row without OHIF's area / max of raw stored values (`plaid_marks`);
- the panel that shows what arrived opens by itself: Measurements for the SR, Segmentation for the SEG.

Values are Python data written out as JavaScript; `JsCode` holds the few that must be code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from plaid.pacs.seg import BOX_LABEL_PREFIX

OHIF_VERSION = "3.13.2"
LONGITUDINAL_MODE = "@ohif/mode-longitudinal"
TRACKED_MEASUREMENTS_PANEL = "@ohif/extension-measurement-tracking.panelModule.trackedMeasurements"
SEGMENTATION_PANEL = "@ohif/extension-cornerstone.panelModule.panelSegmentation"


@dataclass(frozen=True)
class JsCode:
    """A JavaScript expression written into the config as is."""

    source: str


def to_js(value: Any, indent: int = 0) -> str:
    """``value`` (dicts, lists, strings, numbers, booleans, None and `JsCode`) as a JavaScript expression."""
    pad, inner = "  " * indent, "  " * (indent + 1)
    if isinstance(value, JsCode):
        return value.source
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f"{inner}{json.dumps(str(key))}: {to_js(item, indent + 1)}" for key, item in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, (list, tuple)):
        if not value:
            return "[]"
        return "[\n" + ",\n".join(f"{inner}{to_js(item, indent + 1)}" for item in value) + f"\n{pad}]"
    return json.dumps(value)


def _origin(path: str) -> JsCode:
    """This page's origin followed by ``path``."""
    return JsCode(f"window.location.origin + {json.dumps(path)}")


# "R CC" from the displayed image's Image Laterality (else Laterality) and View Position.
LATERALITY_VIEW = JsCode("""({ instance, referenceInstance }) => {
      const image = instance || referenceInstance || {};
      return [image.ImageLaterality || image.Laterality, image.ViewPosition].filter(Boolean).join(' ');
    }""")
# Patient Orientation as DICOM writes it, row direction then column direction ("P\\L").
PATIENT_ORIENTATION = JsCode("""({ instance, referenceInstance }) => {
      const orientation = (instance || referenceInstance || {}).PatientOrientation;
      return Array.isArray(orientation) ? orientation.join('\\\\') : orientation || '';
    }""")
def plaid_marks(label_prefix: str) -> JsCode:
    """``initToolGroups`` wrapped: after the mode's own tool groups, a RectangleROI whose label starts with
    ``label_prefix`` (PLAID's) is drawn with its label alone, and its Measurements row shows the label alone
    (no area / max of raw stored values, no repeated finding); other rectangles keep OHIF's statistics."""
    return JsCode("""(initToolGroups) => function plaidToolGroups(modules) {
      initToolGroups.call(this, modules);
      const isPlaid = label => typeof label === 'string' && label.startsWith(__PREFIX__);
      const { toolGroupService, servicesManager } = modules;
      for (const toolGroupId of ['default', 'mpr']) {
        const configuration = toolGroupService.getToolConfiguration(toolGroupId, 'RectangleROI');
        if (configuration && !configuration.plaidMarks) {
          const statistics = configuration.getTextLines;
          toolGroupService.setToolConfiguration(toolGroupId, 'RectangleROI', { ...configuration, plaidMarks: true,
            getTextLines: (data, targets) => (isPlaid(data.label) ? [data.label] : statistics(data, targets)) });
        }
      }
      const { measurementService } = servicesManager.services;
      for (const mapping of measurementService.getSourceMappings('Cornerstone3DTools', '0.1') || []) {
        if (mapping.annotationType === 'RectangleROI' && !mapping.plaidMarks) {
          const toMeasurement = mapping.toMeasurementSchema;
          mapping.plaidMarks = true;
          mapping.toMeasurementSchema = (detail, ...rest) => {
            const measurement = toMeasurement(detail, ...rest);
            if (!measurement || !isPlaid(measurement.label)) {
              return measurement;
            }
            // the row repeats the SR's coded finding unless the annotation leaves it out (the SR keeps it)
            delete detail.annotation.data.finding;
            return { ...measurement, displayText: { primary: [], secondary: [] } };
          };
        }
      }
    }""".replace("__PREFIX__", json.dumps(label_prefix)))


def app_config(title: str = "PLAID - Orthanc") -> dict[str, Any]:
    """OHIF's ``window.config`` for PLAID (see the module docstring)."""
    source = {
        "namespace": "@ohif/extension-default.dataSourcesModule.dicomweb",
        "sourceName": "orthanc",
        "configuration": {
            "friendlyName": title, "name": "orthanc",
            "qidoRoot": _origin("/dicom-web"), "wadoRoot": _origin("/dicom-web"), "wadoUriRoot": _origin("/wado"),
            "qidoSupportsIncludeField": True, "supportsReject": False, "dicomUploadEnabled": True,
            "imageRendering": "wadors", "thumbnailRendering": "rendered", "enableStudyLazyLoad": True,
            "supportsFuzzyMatching": False, "supportsWildcard": True, "staticWado": False,
            "singlepart": "bulkdata,video", "omitQuotationForMultipartRequest": True,
            "bulkDataURI": {"enabled": True, "relativeResolution": "studies"},
        },
    }
    overlay_items = [
        {"id": "PlaidLateralityView", "inheritsFrom": "ohif.overlayItem", "title": "Laterality and view",
         "contentF": LATERALITY_VIEW},
        {"id": "PlaidPatientOrientation", "inheritsFrom": "ohif.overlayItem",
         "title": "Patient Orientation (row direction \\ column direction)", "contentF": PATIENT_ORIENTATION},
    ]
    panel_triggers = [
        {"panelId": TRACKED_MEASUREMENTS_PANEL, "sourceServiceName": "measurementService",
         "sourceEvents": ["MEASUREMENT_ADDED", "RAW_MEASUREMENT_ADDED"]},
        {"panelId": SEGMENTATION_PANEL, "sourceServiceName": "segmentationService",
         "sourceEvents": ["SEGMENTATION_ADDED"]},
    ]
    return {
        "routerBasename": "/", "extensions": [], "modes": [], "showStudyList": True,
        "customizationService": {
            "ohif.tours": {"$set": []},
            "viewportOverlay.topRight": {"$set": overlay_items},
        },
        "maxNumberOfWebWorkers": 2, "showWarningMessageForCrossOrigin": False, "showCPUFallbackMessage": False,
        "showLoadingIndicator": True, "strictZSpacingForVolumeViewport": False, "defaultDataSourceName": "orthanc",
        "investigationalUseDialog": {"option": "never"}, "dataSources": [source],
        # open PLAID's SEG and SR straight away: the SR's boxes become tracked, editable measurements
        "disableConfirmationPrompts": True,
        # OHIF's mode factory applies this to the mode with immutability-helper
        "modesConfiguration": {LONGITUDINAL_MODE: {
            "activatePanelTriggers": {"$set": panel_triggers},
            "initToolGroups": {"$apply": plaid_marks(BOX_LABEL_PREFIX)},
        }},
    }


def app_config_js(title: str = "PLAID - Orthanc") -> str:
    """The ``app-config.js`` file OHIF loads: `app_config` as ``window.config``."""
    return f"/** PLAID: OHIF {OHIF_VERSION} on Orthanc through this server's proxy. */\nwindow.config = " \
           f"{to_js(app_config(title))};\n"
