"""The docs' option tables, made from the code's option descriptions, and the check that they cover every option.

Each table sits in a document between ``<!-- options:NAME:begin -->`` and ``<!-- options:NAME:end -->``;
``python -m plaid_dev.option_tables --write`` (with ``lib`` and ``scripts`` on ``PYTHONPATH``, or
``make docs-tables``) rewrites them in place, and without ``--write`` it reports every stale table and every
option reachable from a request, a ``--conf`` key, a recipe or a CLI flag that no table shows (exit 1).
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import logging
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import fields
from pathlib import Path
from types import ModuleType

from plaid.infer.predictor import InferConfig
from plaid.model.backends import RUNTIME_ENV
from plaid.options import OptionDoc, markdown_table, option_docs, show_value
from plaid.train.config import TrainConfig, option_docs_flat

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
APP_DIR = REPO_ROOT / "apps" / "plaid"
DOCS = ("README.md", "apps/plaid/README.md", "docs/real-data.md", "docs/cli.md")
MARKER = re.compile(r"(<!-- options:([a-z-]+):begin -->\n)(.*?)(<!-- options:\2:end -->)", re.S)
OPTION_HEADERS = ("option", "default", "range", "meaning")
TRAIN_TABLE_DOC = "docs/real-data.md"


def _app() -> dict[str, ModuleType]:
    """The app's modules that describe its options (apps/plaid put on ``sys.path`` as MONAI Label does)."""
    if str(APP_DIR) not in sys.path:
        sys.path.insert(0, str(APP_DIR))
    import lib.conf_keys
    import lib.configs.calcification
    import lib.infers.calcification
    import lib.server.request_checks
    import lib.trainers.calcification

    name = "plaid_app_main"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, APP_DIR / "main.py")
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.modules[name] = module
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    return {"conf": lib.conf_keys, "configs": lib.configs.calcification, "infers": lib.infers.calcification,
            "checks": lib.server.request_checks, "trainers": lib.trainers.calcification, "main": sys.modules[name]}


def _code(name: str) -> str:
    return f"`{name}`"


def _rows(docs: Iterable[OptionDoc]) -> list[tuple[str, str, str, str]]:
    return [(_code(doc.name), doc.default, doc.bounds, doc.meaning()) for doc in docs]


def cli_parser() -> argparse.ArgumentParser:
    """The `plaid` parser as the docs show it: defaults taken from the environment ($PLAID_RUNTIME) left out."""
    from plaid.cli import build_parser

    saved = os.environ.pop(RUNTIME_ENV, None)
    try:
        return build_parser()
    finally:
        if saved is not None:
            os.environ[RUNTIME_ENV] = saved


def training_actions() -> set[tuple[tuple[str, ...], str]]:
    """(flags, dest) of every training option flag (`plaid.commands.train.add_config_options`) but --recipe."""
    from plaid.commands.train import add_config_options

    parser = argparse.ArgumentParser(add_help=False)
    add_config_options(parser)
    return {(tuple(action.option_strings), action.dest) for action in parser._actions if action.dest != "recipe"}


def training_flags() -> dict[str, list[str]]:
    """Training option name -> the `plaid train` flags that set it."""
    flags: dict[str, list[str]] = {}
    for strings, dest in sorted(training_actions()):
        flags.setdefault(dest, []).extend(strings)
    return flags


def train_table() -> str:
    """Every training option: recipe key, `--conf` key, flag, default, range, meaning."""
    flags = training_flags()
    rows = [(_code(doc.name), ", ".join(_code(flag) for flag in flags.get(doc.name, [])) or "–", doc.default,
             doc.bounds, doc.meaning()) for doc in option_docs_flat()]
    return markdown_table(("option", "flag", "default", "range", "meaning"), rows)


def app_conf_table() -> str:
    """The app's own `--conf` keys, then the inference ones (`InferConfig`)."""
    app_conf = _app()["conf"].AppConf
    training = set(TrainConfig.option_names())
    also = "Also sets the training option of that name"
    infer = [OptionDoc(doc.name, doc.help, doc.default, doc.bounds, f"{doc.notes}. {also}" if doc.notes else also)
             if doc.name in training else doc for doc in option_docs(InferConfig)]
    return markdown_table(("key", *OPTION_HEADERS[1:]), _rows([*option_docs(app_conf), *infer]))


def train_request_table() -> str:
    """A train request's parameters: training options described by `TrainConfig`, then the trainer's own."""
    trainers = _app()["trainers"]
    docs = [option_docs_flat_by_name()[name] for name in trainers.REQUEST_KEYS]
    return markdown_table(("param", *OPTION_HEADERS[1:]), _rows([*docs, *trainers.REQUEST_EXTRAS]))


def option_docs_flat_by_name() -> dict[str, OptionDoc]:
    """The training options' rows by name."""
    return {doc.name: doc for doc in option_docs_flat()}


def infer_request_table() -> str:
    """An infer request's parameters."""
    return markdown_table(("param", *OPTION_HEADERS[1:]), _rows(_app()["infers"].INFER_PARAMS))


def other_requests_table() -> str:
    """The parameters of batch-inference, scoring and next-sample requests."""
    rows = [(name, _code(request), *rest) for request, docs in _app()["main"].OTHER_REQUEST_PARAMS.items()
            for name, *rest in _rows(docs)]
    return markdown_table(("param", "request", "default", "range", "meaning"), rows)


def _flag_cell(action: argparse.Action) -> str:
    return ", ".join(_code(flag) for flag in action.option_strings) or _code(action.metavar or action.dest.upper())


def _cli_default(action: argparse.Action) -> str:
    if action.required or (not action.option_strings and action.nargs not in ("?", "*")):
        return "required"
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)) or action.default in (
            None, argparse.SUPPRESS):
        return ""
    default = action.default
    return show_value(",".join(map(str, default)) if isinstance(default, (list, tuple)) else default)


def _cli_help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    text = " ".join(parser._get_formatter()._expand_help(action).split()) if action.help else ""
    if action.choices and not isinstance(action, argparse._SubParsersAction):
        text += f" (one of {', '.join(_code(str(choice)) for choice in action.choices)})"
    return text


def commands(parser: argparse.ArgumentParser, path: str = "plaid") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """(command line, parser) of ``parser`` and of every sub-command below it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, f"{path} {name}")


def takes_training(parser: argparse.ArgumentParser) -> bool:
    """Whether ``parser`` has every training option flag (`plaid.commands.train.add_config_options` added them)."""
    return training_actions() <= {(tuple(action.option_strings), action.dest) for action in parser._actions}


def documented_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The actions of ``parser`` its CLI table shows: all but help, sub-command lists and training options."""
    training = training_actions() if takes_training(parser) else set()
    return [action for action in parser._actions
            if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction, argparse._VersionAction))
            and (tuple(action.option_strings), action.dest) not in training]


def cli_tables() -> str:
    """One table per `plaid` command: its arguments and flags, their defaults and help."""
    parts = []
    for path, parser in commands(cli_parser()):
        actions = documented_actions(parser)
        if not actions:
            continue
        parts.append(f"### `{path}`\n")
        if parser.description:
            parts.append(" ".join(parser.description.split()) + "\n")
        if takes_training(parser):
            parts.append(f"Also every training option's flag ([training options]({_link_from_cli()})).\n")
        rows = [(_flag_cell(action), _cli_default(action), _cli_help(parser, action)) for action in actions]
        parts.append(markdown_table(("argument", "default", "meaning"), rows) + "\n")
    return "\n".join(parts).rstrip("\n")


def _link_from_cli() -> str:
    return "real-data.md#6-training-options"


TABLES: dict[str, Callable[[], str]] = {
    "train": train_table, "app-conf": app_conf_table, "train-request": train_request_table,
    "infer-request": infer_request_table, "other-requests": other_requests_table, "cli": cli_tables,
}


def render_doc(text: str, rendered: dict[str, str]) -> str:
    """``text`` with the content between each pair of option markers replaced by its rendered table."""
    def replace(match: re.Match[str]) -> str:
        name = match.group(2)
        if name not in rendered:
            raise KeyError(f"no option table is called {name!r} (known: {', '.join(rendered)})")
        return f"{match.group(1)}{rendered[name]}\n{match.group(4)}"

    return MARKER.sub(replace, text)


def tables_in(text: str) -> dict[str, str]:
    """Marker name -> the table text between that pair of markers in ``text``."""
    return {match.group(2): match.group(3) for match in MARKER.finditer(text)}


def read_docs(root: Path = REPO_ROOT) -> dict[str, str]:
    """The text of every document that holds option tables, by its path relative to ``root``."""
    return {name: (root / name).read_text() for name in DOCS}


def render_all() -> dict[str, str]:
    """Every table as the code renders it now."""
    return {name: make() for name, make in TABLES.items()}


# --- What the tables must cover: every option reachable from the code, found in the code itself.

URL_KEYS = frozenset({"model", "method", "strategy"})  # named by the request's URL, not a parameter


def read_keys(path: Path, variables: Iterable[str], functions: Iterable[str] | None = None) -> set[str]:
    """The string keys read from any of ``variables`` (``x.get("k")``, ``x["k"]``, ``"k" in x``; ``x`` a name or
    an attribute ``self.x``) in the functions called ``functions`` of the file at ``path`` (anywhere when None)."""
    tree = ast.parse(path.read_text(), str(path))
    wanted = set(variables)
    scopes = [tree] if functions is None else [node for node in ast.walk(tree) if isinstance(
        node, ast.FunctionDef) and node.name in set(functions)]

    def named(node: ast.AST) -> bool:
        return (isinstance(node, ast.Name) and node.id in wanted) or (isinstance(node, ast.Attribute)
                                                                        and node.attr in wanted)

    def text(node: ast.AST) -> str | None:
        return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None

    keys: set[str | None] = set()
    for scope in scopes:
        for node in ast.walk(scope):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
                    and named(node.func.value) and node.args):
                keys.add(text(node.args[0]))
            elif isinstance(node, ast.Subscript) and named(node.value):
                keys.add(text(node.slice))
            elif isinstance(node, ast.Compare) and isinstance(node.ops[0], ast.In) and named(node.comparators[0]):
                keys.add(text(node.left))
    return {key for key in keys if key}


def reachable() -> dict[str, tuple[set[str], tuple[str, ...]]]:
    """Where options come from -> (their names, the tables that may show them), derived from the code."""
    app = _app()
    lib = APP_DIR / "lib"
    conf = {key for path in sorted(APP_DIR.rglob("*.py")) for key in read_keys(path, ["conf"])}
    conf |= {item.name for item in fields(InferConfig)} | set(app["configs"].CONF_RENAMES)
    conf |= {item.name for item in fields(app["conf"].AppConf)}
    training = set(TrainConfig.option_names())
    infer = read_keys(lib / "infers" / "calcification.py", ["request"], ["request_options"])
    infer |= read_keys(APP_DIR / "main.py", ["request"], ["infer"])
    train = set(app["trainers"].REQUEST_KEYS) | read_keys(lib / "trainers" / "calcification.py", ["request"],
                                                          ["validate_request"])
    other = read_keys(APP_DIR / "main.py", ["params"], ["check_batch_infer_request", "check_scoring_request"])
    other |= read_keys(lib / "scoring" / "films.py", ["request"])
    other |= read_keys(lib / "server" / "request_checks.py", ["values"], ["check_strategy_params"])
    other |= {key for name in ("ranked.py", "recency.py") for key in read_keys(lib / "activelearning" / name,
                                                                               ["request"])}
    return {
        "recipe key": (training, ("train",)),
        "--conf key": (conf - {"init_checkpoint"} | training - {"init_checkpoint"}, ("app-conf", "train")),
        "train request": (train - URL_KEYS, ("train-request",)),
        "infer request": (infer - URL_KEYS, ("infer-request",)),
        "batch, scoring or next-sample request": (other - URL_KEYS, ("other-requests", "infer-request")),
    }


def row_names(table: str, column: int = 0) -> set[str]:
    """The backticked names in column ``column`` of every row of a markdown table."""
    names: set[str] = set()
    for line in table.splitlines():
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) > column and not set(cells[column]) <= set("-: "):
            names.update(re.findall(r"`([^`]+)`", cells[column]))
    return names


def cli_sections(text: str) -> dict[str, str]:
    """Command line (``plaid train``) -> its part of the CLI tables."""
    parts = re.split(r"^### `([^`]+)`\n", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def missing_options(docs: dict[str, str]) -> list[str]:
    """Every option reachable from the code that no table of ``docs`` (path -> text) shows, as 'where: name'."""
    tables: dict[str, str] = {}
    for text in docs.values():
        tables.update(tables_in(text))
    missing = []
    for where, (names, table_names) in reachable().items():
        shown = set().union(*(row_names(tables.get(name, "")) for name in table_names))
        missing += [f"{where}: {name}" for name in sorted(names - shown)]
    training_shown = row_names(tables.get("train", ""), 1)
    sections = cli_sections(tables.get("cli", ""))
    for path, parser in commands(cli_parser()):
        shown = row_names(sections.get(path, ""))
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction, argparse._VersionAction)):
                continue
            if action not in documented_actions(parser):
                missing += [f"{path}: {flag}" for flag in action.option_strings if flag not in training_shown]
            elif not set(re.findall(r"`([^`]+)`", _flag_cell(action))) <= shown:
                missing.append(f"{path}: {_flag_cell(action)}")
    return missing


def result_keys() -> set[str]:
    """The top-level keys of an infer result's JSON: the prediction summary's, those the infer task adds, and the
    saved label's id the app adds."""
    keys: set[str] = set()
    predictor = ast.parse((REPO_ROOT / "lib" / "plaid" / "infer" / "predictor.py").read_text())
    for node in ast.walk(predictor):
        if isinstance(node, ast.FunctionDef) and node.name == "summary":
            returned = next(item.value for item in ast.walk(node) if isinstance(item, ast.Return))
            keys |= {key.value for key in returned.keys if isinstance(key, ast.Constant)}  # type: ignore[union-attr]
    infer = ast.parse((APP_DIR / "lib" / "infers" / "calcification.py").read_text())
    for node in ast.walk(infer):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "update"
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "summary"):
            keys |= {keyword.arg for keyword in node.keywords if keyword.arg}
    return keys | _assigned_keys(infer, "summary", "__call__") | _assigned_keys(ast.parse(
        (APP_DIR / "main.py").read_text()), "result", "infer")


def _assigned_keys(tree: ast.AST, variable: str, function: str) -> set[str]:
    """The string keys assigned as ``variable["key"] = ...`` in the functions called ``function``."""
    return {target.slice.value for scope in ast.walk(tree) if isinstance(scope, ast.FunctionDef)
            and scope.name == function for node in ast.walk(scope) if isinstance(node, ast.Assign)
            for target in node.targets if isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name)
            and target.value.id == variable and isinstance(target.slice, ast.Constant)}


def stale_tables(docs: dict[str, str], rendered: dict[str, str]) -> list[str]:
    """'document: table' for every table of ``docs`` that differs from what the code renders."""
    return [f"{path}: {name}" for path, text in docs.items() for name, table in tables_in(text).items()
            if table != rendered.get(name, "") + "\n"]


def main(argv: list[str] | None = None) -> int:
    """Rewrite the tables (``--write``) or report stale tables and options no table shows (exit 1)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite the tables in place")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    docs, rendered = read_docs(), render_all()
    if args.write:
        for path, text in docs.items():
            new = render_doc(text, rendered)
            if new != text:
                (REPO_ROOT / path).write_text(new)
                logger.info("rewrote the option tables of %s", path)
        docs = read_docs()
    problems = [f"stale table {item}" for item in stale_tables(docs, rendered)]
    problems += [f"in no table: {item}" for item in missing_options(docs)]
    for problem in problems:
        logger.error("%s", problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
