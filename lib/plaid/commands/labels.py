"""`plaid labels`: list, restore and purge the kept versions of a label (`plaid.io.label_history`).

``versions`` and ``purge`` read the datastore folder the server keeps its history in (the studies folder,
or for the DICOMweb datastore its cache folder, ``~/.cache/monailabel/dicom/<md5 of the PACS URL>``).
``restore`` asks the running server (PUT /datastore/label/restore), so the label is checked like any
other, stored in the PACS by the DICOMweb datastore, and recorded as a new version by the restoring
login; the bearer token is read from a file, never from the command line.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import requests

from plaid.errors import PlaidInputError
from plaid.io.label_history import LabelHistory

logger = logging.getLogger(__name__)
TIMEOUT_S = 300


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `labels` sub-command with its `versions`, `restore` and `purge` actions."""
    parser = subparsers.add_parser("labels", help="list, restore or purge the kept versions of a label",
                                   description=__doc__.split("\n\n", 1)[1])
    actions = parser.add_subparsers(dest="action", required=True)
    for name, text in (("versions", "list every kept version with its user and time"),
                       ("restore", "make a kept version the current label again, through the server"),
                       ("purge", "delete every kept version of a label (administrators only)")):
        action = actions.add_parser(name, help=text, description=text)
        if name != "restore":
            action.add_argument("root", type=Path, metavar="STUDIES",
                                help="the datastore folder: the studies folder, or the DICOMweb datastore's cache")
        action.add_argument("image_id", metavar="IMAGE_ID")
        action.add_argument("--tag", default="final", help="label tag (default: final)")
        if name == "versions":
            action.add_argument("--json", action="store_true", help="print the records as JSON")
        if name == "restore":
            action.add_argument("version", type=int, metavar="VERSION")
            action.add_argument("--server", required=True, help="the PLAID server's URL, e.g. https://host:8000")
            action.add_argument("--token-file", type=Path,
                                help="file holding the bearer token (when the server has login on)")
            action.add_argument("--ca-file", type=Path, help="CA certificate that signed the server's TLS certificate")
        if name == "purge":
            action.add_argument("--yes", action="store_true", help="confirm: the versions cannot be recovered")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run one action; returns the exit code."""
    if args.action == "restore":
        return restore(args)
    history = LabelHistory(args.root)
    if args.action == "versions":
        kept = [version.summary() for version in history.versions(args.tag, args.image_id)]
        if args.json:
            sys.stdout.write(json.dumps(kept, indent=1) + "\n")
        for entry in [] if args.json else kept:
            sys.stdout.write(f"{entry['version']:>4}  {entry['event']:<8} {entry['saved_at_utc']}  {entry['user']}"
                             f"  {entry['file'] or '-'}\n")
        return 0 if kept else 1
    if not args.yes:
        raise PlaidInputError("purge removes every kept version for good: add --yes to confirm")
    sys.stdout.write(f"purged {history.purge(args.tag, args.image_id)} version(s)\n")
    return 0


def restore(args: argparse.Namespace) -> int:
    """Ask ``args.server`` to restore version ``args.version`` (PUT /datastore/label/restore)."""
    headers = {}
    if args.token_file:
        headers["Authorization"] = f"Bearer {args.token_file.read_text().strip()}"
    answer = requests.put(f"{args.server.rstrip('/')}/datastore/label/restore", headers=headers, timeout=TIMEOUT_S,
                          params={"label": args.image_id, "tag": args.tag, "version": args.version},
                          verify=str(args.ca_file) if args.ca_file else True)
    if answer.status_code != 200:
        logger.error("the server refused the restore (%d): %s", answer.status_code, answer.text[:500])
        return 1
    sys.stdout.write(f"restored version {args.version} of {args.image_id}/{args.tag} as version "
                     f"{answer.json()['version']}\n")
    return 0
