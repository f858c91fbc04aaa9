"""The docs' option tables are the code's: each generated table matches what the code renders now, every option
reachable from a request, a `--conf` key, a recipe or a CLI flag is in a table, and the checks can fail."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from plaid.errors import PlaidInputError
from plaid.options import Bounds, OptionDoc, markdown_table, option_fields
from plaid.train.config import TrainConfig, option_bounds, option_field
from plaid_dev import option_tables
from plaid_dev.option_tables import (
    missing_options,
    read_docs,
    read_keys,
    render_all,
    render_doc,
    result_keys,
    stale_tables,
    tables_in,
)


@pytest.fixture(scope="module")
def docs() -> dict[str, str]:
    return read_docs()


@pytest.fixture(scope="module")
def rendered() -> dict[str, str]:
    return render_all()


def test_every_table_is_in_a_document_and_matches_the_code(docs: dict[str, str], rendered: dict[str, str]) -> None:
    placed = [name for text in docs.values() for name in tables_in(text)]
    assert sorted(placed) == sorted(rendered), "each table sits in exactly one document"
    assert stale_tables(docs, rendered) == [], "run `make docs-tables` and commit the result"


def test_every_reachable_option_is_in_a_table(docs: dict[str, str]) -> None:
    assert missing_options(docs) == []


def _without_row(docs: dict[str, str], path: str, first_cell: str) -> dict[str, str]:
    """``docs`` with the table row of ``path`` that starts with ``first_cell`` removed."""
    text, count = re.subn(rf"^\| {re.escape(first_cell)} \|.*\n", "", docs[path], flags=re.M)
    assert count, f"no row {first_cell} in {path}"
    return {**docs, path: text}


def test_a_missing_training_option_is_reported(docs: dict[str, str], rendered: dict[str, str]) -> None:
    cut = _without_row(docs, "docs/real-data.md", "`redraw_negatives`")
    assert {"recipe key: redraw_negatives", "--conf key: redraw_negatives"} <= set(missing_options(cut))
    assert stale_tables(cut, rendered) == ["docs/real-data.md: train"]


def test_missing_flags_and_request_params_are_reported(docs: dict[str, str]) -> None:
    cut = _without_row(docs, "docs/cli.md", "`--resume`")
    assert missing_options(cut) == ["plaid train: `--resume`"]
    cut = _without_row(docs, "docs/real-data.md", "`learning_rate`")  # its flag --lr lives in that row
    assert {"plaid train: --lr", "plaid crossval: --lr", "plaid simulate-al: --lr"} <= set(missing_options(cut))
    cut = _without_row(docs, "apps/plaid/README.md", "`operating_point`")
    assert missing_options(cut) == ["train request: operating_point"]
    cut = _without_row(docs, "apps/plaid/README.md", "`models`")
    assert missing_options(cut) == ["--conf key: models"]
    cut = _without_row(docs, "apps/plaid/README.md", "`label_tag`")
    assert "infer request: label_tag" in missing_options(cut)


def test_the_named_gaps_are_documented(docs: dict[str, str]) -> None:
    tables: dict[str, str] = {}
    for text in docs.values():
        tables.update(tables_in(text))
    assert "`redraw_negatives`" in tables["train"]
    assert "`models`" in tables["app-conf"]
    assert "`operating_point`" in tables["train-request"] and "`max_false_marks_per_image`" in tables["train-request"]


def test_the_result_json_names_every_key_of_an_infer_result(docs: dict[str, str]) -> None:
    text = docs["apps/plaid/README.md"]
    paragraph = text[text.index("Result JSON:"):].split("\n\n")[0]
    named = set(re.findall(r"`(\w+)`", paragraph))
    assert {"label_output", "label_names"} <= result_keys()
    assert result_keys() - named == set()


def test_infer_parameters_are_described_once(docs: dict[str, str]) -> None:
    text = docs["apps/plaid/README.md"]
    outside = "\n".join(part for index, part in enumerate(re.split(r"<!-- options:[a-z-]+:(?:begin|end) -->", text))
                        if index % 2 == 0)
    assert "Infer request parameters:" not in outside
    assert outside.count("`result_extension` (") == 0


def test_read_keys_finds_gets_subscripts_and_membership(tmp_path: Path) -> None:
    path = tmp_path / "code.py"
    path.write_text("def f(conf, self):\n    conf.get('a')\n    self.conf.get('b', 1)\n    conf['c']\n"
                    "    if 'd' in conf:\n        pass\n    other.get('e')\n\ndef g(conf):\n    conf.get('f')\n")
    assert read_keys(path, ["conf"]) == {"a", "b", "c", "d", "f"}
    assert read_keys(path, ["conf"], ["f"]) == {"a", "b", "c", "d"}


def test_render_doc_replaces_only_between_markers() -> None:
    text = "intro\n<!-- options:x:begin -->\nold\n<!-- options:x:end -->\noutro\n"
    assert render_doc(text, {"x": "| a |"}) == "intro\n<!-- options:x:begin -->\n| a |\n<!-- options:x:end -->\noutro\n"
    with pytest.raises(KeyError, match="y"):
        render_doc(text.replace("x", "y"), {"x": ""})


def test_markdown_table_escapes_pipes() -> None:
    assert markdown_table(("a", "b"), [("x|y", "z")]).splitlines()[-1] == "| x\\|y | z |"


def test_bounds_contain_and_read_as_intervals() -> None:
    bounds = Bounds(0.0, 1.0, low_open=True)
    assert bounds.text() == "(0, 1]"
    assert [bounds.contains(v) for v in (None, 0.0, 1e-9, 1.0, 1.0001, float("nan"))] == [
        True, False, True, True, False, False]
    assert Bounds(0, 2**32, high_open=True, high_text="2**32").text() == "[0, 2**32)"
    assert Bounds(1, lambda: 3).contains(3) and not Bounds(1, lambda: 3).contains(4)


@pytest.mark.parametrize("name", sorted(option_bounds()))
def test_validate_checks_each_options_bounds(name: str) -> None:
    bounds = option_bounds()[name]
    kind = str(option_field(name).type).split("|")[0].strip()
    step = 1 if kind == "int" else 1e-6
    inside = bounds.low + step if bounds.low_open else bounds.low
    TrainConfig.from_mapping({name: inside}).validate()
    with pytest.raises(PlaidInputError, match=name):
        TrainConfig.from_mapping({name: bounds.low if bounds.low_open else bounds.low - step}).validate()
    if not callable(bounds.high):
        outside = bounds.high if bounds.high_open else bounds.high + step
        with pytest.raises(PlaidInputError, match=name):
            TrainConfig.from_mapping({name: outside}).validate()


def test_every_option_field_has_help() -> None:
    for name in TrainConfig.option_names():
        assert option_field(name).metadata["help"], name
    app_conf = option_tables._app()["conf"].AppConf
    assert set(option_fields(app_conf)) == {item.name for item in fields(app_conf)}


def test_cli_help_is_the_fields_help() -> None:
    from plaid.cli import build_parser

    train = next(action for action in build_parser()._actions if hasattr(action, "choices")
                 and isinstance(action.choices, dict)).choices["train"]
    help_of = {action.dest: action.help for action in train._actions}
    for name in ("negative_ratio", "max_false_marks_per_image", "operating_point", "seed"):
        assert help_of[name].startswith(option_field(name).metadata["help"].replace("`", "")), name


def test_option_doc_meaning_joins_help_and_notes() -> None:
    assert OptionDoc("x", "does a", notes="More").meaning() == "does a. More"
    assert OptionDoc("x", "does a").meaning() == "does a"
