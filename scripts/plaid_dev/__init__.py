"""Development tools for PLAID's scripts and tests, not part of the product package `plaid`.

- `serving`: starts MONAI Label with the PLAID app and waits until it answers;
- `orthanc`: starts a throwaway Orthanc PACS;
- `ohif`, `ohif_config`: fetches and serves the OHIF viewer with PLAID's ``app-config.js``;
- `demo_data`: the synthetic studies the demos train and infer on.

Scripts run from scripts/ find it on their own path; pytest adds scripts/ (pyproject.toml).
"""
