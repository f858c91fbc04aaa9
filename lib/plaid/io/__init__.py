"""Reading and writing what PLAID consumes and produces: mammograms (DICOM and rasters), label masks, datalists."""
