"""The package's import graph: every module imports on its own, no module depends on itself through others, and
no package imports one above it in the data flow (read -> patches -> model -> infer -> train -> evaluate)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "lib" / "plaid"
APP_ROOT = Path(__file__).resolve().parents[1] / "apps" / "plaid"

# The core modules the MONAI Label app (apps/plaid) imports; it reaches the core through these only.
APP_CORE_MODULES = frozenset({
    "plaid", "plaid.errors", "plaid.options", "plaid.serialization",
    "plaid.io.datalist", "plaid.io.dicom", "plaid.io.images", "plaid.io.label_history", "plaid.io.labels",
    "plaid.patches.prefetch", "plaid.patches.prepared", "plaid.patches.tissue",
    "plaid.model.checkpoint", "plaid.model.description", "plaid.infer.predictor",
    "plaid.train.checkpointing", "plaid.train.config", "plaid.train.recipes", "plaid.train.records",
    "plaid.activelearning.pool", "plaid.activelearning.strategies",
    "plaid.pacs.dicomweb", "plaid.pacs.seg", "plaid.pacs.sr",
})


def dotted_modules(package: Path, base: Path) -> dict[str, Path]:
    """Every module and package under the folder ``package``, by its dotted name as imported from ``base``."""
    modules = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(base).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def module_names() -> list[str]:
    """Dotted names of every module and package in ``lib/plaid``."""
    return list(dotted_modules(PACKAGE_ROOT, PACKAGE_ROOT.parent))


def imports_in(path: Path, known: set[str]) -> set[str]:
    """The modules of ``known`` that the file at ``path`` imports anywhere (deferred imports count too);
    ``from package import module`` counts as the module, not the package."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets = [f"{node.module}.{alias.name}" for alias in node.names if f"{node.module}.{alias.name}" in known]
            targets = targets or [node.module]
        else:
            continue
        found.update(target for target in targets if target in known)
    return found


def imported_modules(name: str, known: set[str]) -> set[str]:
    """The plaid modules ``name`` imports anywhere in its source (deferred imports count too)."""
    path = PACKAGE_ROOT.parent / Path(*name.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    return imports_in(path, known) - {name}


# The data flow, lowest first: a module may import from its own layer's packages and from the ones below.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("plaid", "plaid.errors", "plaid.serialization", "plaid.options", "plaid.metrics"),
    ("plaid.io",),
    ("plaid.patches",),
    ("plaid.model", "plaid.synth"),
    ("plaid.infer",),
    ("plaid.train",),
    ("plaid.evaluate",),
    ("plaid.activelearning",),
    ("plaid.importers", "plaid.pacs"),
    ("plaid.commands",),
    ("plaid.cli",),
)


def layer_of(module: str, layers: tuple[tuple[str, ...], ...] = LAYERS) -> int:
    """The index in ``layers`` of the most specific entry ``module`` falls under."""
    matches = [(len(name), number) for number, names in enumerate(layers) for name in names
               if module == name or ("." in name and module.startswith(name + "."))]  # "plaid" is its __init__ only
    if not matches:
        raise AssertionError(f"{module} is in no layer of LAYERS: add it where it belongs in the data flow")
    return max(matches)[1]


def upward_imports(graph: dict[str, set[str]], layers: tuple[tuple[str, ...], ...] = LAYERS) -> list[str]:
    """'importer -> imported' for every import of a module from a layer above the importer's in ``layers``."""
    return sorted(f"{name} -> {target}" for name, targets in graph.items() for target in targets
                  if layer_of(target, layers) > layer_of(name, layers))


def import_graph() -> dict[str, set[str]]:
    """Every plaid module and the plaid modules it imports (a module's own parent packages left out)."""
    names = module_names()
    known = set(names)
    return {name: {target for target in imported_modules(name, known) if not name.startswith(target + ".")}
            for name in names}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a list of modules, or None when it has none."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return [*stack[stack.index(target):], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_cycle_finder_reports_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_imports_itself_through_others() -> None:
    assert find_cycle(import_graph()) is None


def test_a_package_in_no_layer_is_named() -> None:
    with pytest.raises(AssertionError, match="plaid.newstep.module is in no layer"):
        layer_of("plaid.newstep.module")


def test_layer_checker_reports_an_upward_import() -> None:
    graph = {"plaid.train.loop": {"plaid.evaluate.metrics", "plaid.model.network"},
             "plaid.io.labels": {"plaid.patches.labels"}, "plaid.evaluate.run": {"plaid.train.holdout"}}
    assert upward_imports(graph) == ["plaid.io.labels -> plaid.patches.labels",
                                     "plaid.train.loop -> plaid.evaluate.metrics"]


def test_no_package_imports_one_above_it_in_the_data_flow() -> None:
    assert upward_imports(import_graph()) == []


def test_every_module_imports_in_a_child_interpreter() -> None:
    script = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    result = subprocess.run([sys.executable, "-c", script, *module_names()], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def test_the_app_imports_the_core_only_through_the_listed_modules() -> None:
    known = set(module_names())
    unlisted = sorted(f"{path.relative_to(APP_ROOT)} -> {module}" for path in sorted(APP_ROOT.rglob("*.py"))
                      for module in imports_in(path, known) - APP_CORE_MODULES)
    assert unlisted == [], "apps/plaid imports core modules outside APP_CORE_MODULES (add them there on purpose)"


# The MONAI Label app's rooms under apps/plaid/lib, as layers, lowest first: a room may import the rooms before
# it, never one after it. The datastore stores images, labels and their info; the server checks requests, wraps
# MONAI Label's endpoints and turns errors into answers, so it uses the datastore and never the reverse (what both
# need, such as the name rule and the JSON value checks, lives in the datastore).
APP_ROOMS: tuple[tuple[str, ...], ...] = (("lib.datastore",), ("lib.server",))


def app_room_graph() -> dict[str, set[str]]:
    """Every module in the rooms of `APP_ROOMS` (dotted as the app imports it) and the room modules it imports."""
    modules = {name: path for (room,) in APP_ROOMS
               for name, path in dotted_modules(APP_ROOT / Path(*room.split(".")), APP_ROOT).items()}
    return {name: imports_in(path, set(modules)) - {name} for name, path in modules.items()}


def test_room_checker_reports_a_backward_import() -> None:
    graph = {"lib.datastore.dicomweb": {"lib.server.errors", "lib.datastore.names"},
             "lib.server.request_checks": {"lib.datastore.json_values"}}
    assert upward_imports(graph, APP_ROOMS) == ["lib.datastore.dicomweb -> lib.server.errors"]


def test_the_datastore_never_imports_the_server() -> None:
    graph = app_room_graph()
    assert "lib.datastore.local" in graph and "lib.server.errors" in graph  # the rooms were found
    assert upward_imports(graph, APP_ROOMS) == [], "move what both rooms need into lib/datastore (see APP_ROOMS)"
