"""PLAID and a PACS: DICOMweb helpers, DICOM SEG / SR writers and SEG readers (the Orthanc and OHIF launchers for
scripts and tests are in scripts/plaid_dev)."""
