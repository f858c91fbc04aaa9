"""PLAID and a PACS: Orthanc launcher, DICOMweb helpers, DICOM SEG / SR writers and SEG readers, OHIF serving."""
