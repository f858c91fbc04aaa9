"""The app's side of MONAI Label's HTTP server.

- `startup`: what `PlaidApp` installs once at start: roles, endpoint checks, label routes, error answers;
- `endpoint_guards`: checks wrapped around MONAI Label's own endpoint functions;
- `request_checks`: the value checks every request parameter goes through;
- `request_files`: the private per-request folder for uploads and results;
- `errors`: the one place where exceptions become 4xx / 5xx answers;
- `auth`: roles on top of MONAI Label's token check;
- `label_endpoints`, `label_routes`: the user recorded with each label version, and the versions API.
"""
