"""The verl-style algorithm pages (docs/algo/) and the upstream guide (docs/upstream.md) stay true to the code.

Every `<node>.<key>` a page mentions (e.g. `algorithm.durian.alpha_ori`, also as a `+key=value` override) must be
a field of that node's settings class, and every default a page's table shows must be the declared one, as the
README's generated tables render it. Every patch file and every row of the extensions table must be named in the
upstream guide.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from verl_difficulty.settings import NODES, render_table
from verl_difficulty.verl_glue.patches import TABLE

ROOT = Path(__file__).resolve().parents[1]
ALGO_PAGES = sorted((ROOT / "docs" / "algo").glob("*.md"))
UPSTREAM = ROOT / "docs" / "upstream.md"
KEYED_PAGES = [*ALGO_PAGES, UPSTREAM]


def _node_classes() -> dict[str, type]:
    """Node path (and each deprecated alias path, e.g. algorithm.diva) -> settings class."""
    out = {}
    for cls in NODES:
        out[cls.NODE] = cls
        parent = cls.NODE.rsplit(".", 1)[0]
        for alias in getattr(cls, "NODE_ALIASES", ()):
            out[f"{parent}.{alias}"] = cls
    return out


NODE_CLASSES = _node_classes()
# longest node first, so that algorithm.diva_grpo.* is never read as the alias algorithm.diva.*
_NODE_ALT = "|".join(re.escape(n) for n in sorted(NODE_CLASSES, key=len, reverse=True))
# not preceded by a word character or a dot: `verl_difficulty.data.diva_dataset` is a module, not a key
KEY_MENTION = re.compile(rf"(?<![\w.])({_NODE_ALT})\.([A-Za-z_]\w*)")
TABLE_ROW = re.compile(rf"^\|\s*`({_NODE_ALT})\.([A-Za-z_]\w*)`\s*\|\s*`([^`]*)`\s*\|", re.M)
GENERATED_ROW = re.compile(r"^\| `(\w+)` \| `([^`]*)` \|", re.M)


def declared_defaults(cls: type) -> dict[str, str]:
    """Field -> its default as the generated settings table renders it."""
    return dict(GENERATED_ROW.findall(render_table(cls)))


def problems(text: str) -> list[str]:
    """Unknown keys and wrong defaults in one page's text."""
    found = []
    for node, key in KEY_MENTION.findall(text):
        cls = NODE_CLASSES[node]
        if key not in {f.name for f in dataclasses.fields(cls)}:
            found.append(f"{node}.{key}: not a field of {cls.__name__}")
    for node, key, shown in TABLE_ROW.findall(text):
        declared = declared_defaults(NODE_CLASSES[node]).get(key)
        if declared is not None and shown != declared:
            found.append(f"{node}.{key}: page shows default {shown!r}, {NODE_CLASSES[node].__name__} declares "
                         f"{declared!r}")
    return found


def test_the_checker_catches_a_wrong_key_and_a_wrong_default():
    page = ("| `algorithm.durian.alpha_ori` | `0.5` | weight |\n"
            "python -m verl.trainer.main_ppo +algorithm.g2rpo.task_keys=data_source\n"
            "| `algorithm.g2rpo.mode` | `two_stage` | ok |\n")
    found = problems(page)
    assert len(found) == 2, found
    assert "algorithm.durian.alpha_ori" in found[1] and "'0.5'" in found[1]
    assert "algorithm.g2rpo.task_keys" in found[0]
    # a module path is not a key; the alias node is checked against DivaConfig
    assert problems("pkg://verl_difficulty.data.diva_dataset and `algorithm.diva.kappa`") == []
    assert problems("`algorithm.diva.no_such_key`") == ["algorithm.diva.no_such_key: not a field of DivaConfig"]


def test_there_is_one_page_per_estimator_and_an_index():
    from verl_difficulty.verl_glue.estimators import ESTIMATORS

    names = {p.stem for p in ALGO_PAGES}
    assert set(ESTIMATORS) <= names, f"docs/algo/ lacks a page for {sorted(set(ESTIMATORS) - names)}"
    index = (ROOT / "docs" / "algo" / "README.md").read_text()
    for name in ESTIMATORS:
        assert f"({name}.md)" in index, f"docs/algo/README.md does not link {name}.md"


@pytest.mark.parametrize("page", KEYED_PAGES, ids=lambda p: p.name)
def test_keys_and_defaults_match_the_settings(page):
    text = page.read_text()
    assert problems(text) == []


@pytest.mark.parametrize("name", ["g2rpo", "durian", "diva_grpo"])
def test_each_estimator_page_shows_every_key_of_its_node(name):
    cls = NODE_CLASSES[f"algorithm.{name}"]
    shown = {key for node, key, _ in TABLE_ROW.findall((ROOT / "docs" / "algo" / f"{name}.md").read_text())
             if NODE_CLASSES[node] is cls}
    missing = set(declared_defaults(cls)) - shown
    assert not missing, f"docs/algo/{name}.md has no table row for {sorted(missing)}"


def test_upstream_guide_names_every_patch_and_every_extension():
    text = UPSTREAM.read_text()
    patches = sorted(p.name for p in (ROOT / "patches").glob("*.diff"))
    assert patches, "no patch files found"
    assert [p for p in patches if p not in text] == []
    assert [row.target for row in TABLE if f"`{row.target}`" not in text] == []


@pytest.mark.parametrize("page", KEYED_PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page):
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text())
    local = [link for link in links if "://" not in link]
    assert local, f"{page.name} links no local page"
    assert [link for link in local if not (page.parent / link).exists()] == []
