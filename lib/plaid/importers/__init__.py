"""Dataset adapters: turn public mammography datasets into PLAID's folder layout.

Each adapter writes the images, ``masks/<image_id>.png`` (calcification masks, empty for images without
calcification), ``metadata.csv`` (patient, pixel spacing, image-level truth and the dataset's own columns)
and ``import_report.json`` (what was written and what was left out, and why).
"""
