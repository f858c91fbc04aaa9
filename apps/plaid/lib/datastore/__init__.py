"""Where the app keeps images and labels: the local and the DICOMweb datastore and what they share.

- `local`: the checked local datastore (a folder of films);
- `dicomweb`, `dicomweb_setup`, `pacs_credentials`: the DICOMweb datastore, how it is built from
  `--conf` and where its PACS credentials come from;
- `dicom_results`: inference results written back to the PACS;
- `names`: the one rule for ids and tags that become file names;
- `stored_info`: checked ``info`` / ``params`` values the datastores keep;
- `label_versions`: earlier label versions and the user who saved each.
"""
