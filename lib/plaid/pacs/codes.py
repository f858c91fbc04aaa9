"""Coded concepts PLAID writes into DICOM SEG and SR objects (checked against pydicom's SNOMED CT / DCM tables).

- Segmented property category: SCT 49755003 "Morphologically abnormal structure" (DICOM CID 7150).
- Segmented property type: SCT 18115005 "Pathologic calcification, calcified structure (morphologic
  abnormality)", the morphologic-abnormality concept for a calcification (pydicom codedict
  ``PathologicCalcificationCalcifiedStructure``); used as the SR finding type too.
- Anatomic region: SCT 76752008 "Breast".
- Algorithm family: DCM 123110 "Artificial Intelligence" (CID 7162).
- Procedure reported: LN 46339-8 "Breast - unilateral mammogram".
- Patch probability: DCM 122157 "Probability", in UCUM "%" (percent; viewers print the unit code after a
  value, and the dimensionless UCUM "1" reads as a stray digit).
"""

from __future__ import annotations

from pydicom.sr.coding import Code

CALCIFICATION_LABEL = "Calcification"
MORPHOLOGICALLY_ABNORMAL_STRUCTURE = Code("49755003", "SCT", "Morphologically abnormal structure")
CALCIFICATION = Code("18115005", "SCT", "Pathologic calcification, calcified structure")
BREAST = Code("76752008", "SCT", "Breast")
PROBABILITY = Code("122157", "DCM", "Probability")
PERCENT = Code("%", "UCUM", "percent")
ARTIFICIAL_INTELLIGENCE = Code("123110", "DCM", "Artificial Intelligence")
UNILATERAL_MAMMOGRAM = Code("46339-8", "LN", "Breast - unilateral mammogram")
