"""The README is a first five minutes and the docs/ pages hold the rest: the README stays short,
every relative link in it and in docs/ leads somewhere, every page is reachable from the README,
and what the README says about the core files (their line counts, the start commands) holds."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import README, REPO, doc_block, doc_table
from tests.test_readme import PRINTS, make_n

DOCS = REPO / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]

# The pages the README lists under "More": each must be linked from it.
MORE = {
    "docs/template.md",
    "docs/chapter-numbers.md",
    "docs/chapter-to-lightning.md",
    "docs/optuna-processes.md",
}
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def unfenced(text: str) -> str:
    """`text` without its fenced blocks."""
    return re.sub(r"^\s*```.*?^\s*```", "", text, flags=re.S | re.M)


def prose(text: str) -> str:
    """`text` without its fenced blocks and inline code, where `[x](y)` is not a link."""
    return re.sub(r"`[^`\n]*`", "", unfenced(text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[`*]", "", heading.lstrip("#").strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """A page's headings' anchors (a heading's inline code is part of its anchor)."""
    return {slug(h) for h in re.findall(r"^#{1,6} .+$", unfenced(page.read_text()), re.M)}


def broken_links(page: Path) -> list[str]:
    """Each relative link of `page` whose file, or heading, does not exist."""
    broken = []
    for target in LINK.findall(prose(page.read_text())):
        if re.match(r"[a-z]+:", target):  # https:, mailto:: not this repo's
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no heading #{anchor} in {file.name}")
    return broken


def test_the_readme_is_a_first_five_minutes():
    assert len(README.read_text().splitlines()) <= 250


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(REPO)) for p in PAGES])
def test_every_relative_link_resolves(page):
    assert broken_links(page) == []


def test_a_broken_link_or_anchor_is_caught(tmp_path):
    (tmp_path / "a.md").write_text("# Top\n\n## Resume, and bad input\n")
    page = tmp_path / "b.md"
    page.write_text(
        "[ok](a.md#resume-and-bad-input) [ok](#here) [web](https://x.org/y.md)\n"
        "[gone](c.md) [no heading](a.md#resume) `[code](d.md)`\n\n## Here\n"
    )
    assert broken_links(page) == ["c.md: no such file", "a.md#resume: no heading #resume in a.md"]
    assert slug("## The numbers (CPU)") == "the-numbers-cpu"
    assert slug("## Coming from hydra-optuna-sweeper 1.3") == "coming-from-hydra-optuna-sweeper-13"


def test_every_docs_page_is_linked_from_the_readme():
    linked = {
        (REPO / t.partition("#")[0]).resolve() for t in LINK.findall(prose(README.read_text()))
    }
    assert [p.name for p in DOCS.glob("*.md") if p.resolve() not in linked] == []


def test_the_more_pages_are_linked_from_the_readme():
    text = README.read_text()
    assert all(f"]({page})" in text for page in MORE)


def test_the_reading_order_gives_each_core_files_line_count():
    rows = doc_table("README.md", "## Read the code in this order")
    counted = {}
    for _, cell, lines, _ in rows:
        path = cell.strip("`")
        counted[path] = len((REPO / path).read_text().splitlines())
        assert int(lines) == counted[path], f"README: {path} has {counted[path]} lines"
    # every file the chapter's run goes through, from the command to the trained model
    core = ["model.py", "module.py", "binary.py", "tasks.py", "data.py", "datamodule.py",
            "train.py"]  # fmt: skip
    yaml = ["train.yaml", "model/mlp.yaml", "task/binary.yaml", "data/xor.yaml"]
    assert {f"src/xor_lightning/{f}" for f in core} | {f"conf/{f}" for f in yaml} <= set(counted)
    total = re.search(r"The core is these files, (\d+) lines in all", README.read_text())
    assert int(total[1]) == sum(counted.values()) <= 700  # readable in one sitting


def test_the_start_commands_are_make_targets_that_do_what_they_say():
    commands = [line.split("#")[0].strip() for line in doc_block("README.md", "## Start")]
    assert [c.split()[1] for c in commands] == ["train", "tensorboard", "sweep", "test"]
    for command in commands:
        printed = make_n(command)
        assert all(re.search(p, printed, re.M) for p in PRINTS[command.split()[1]]), printed


def next_steps() -> list[str]:
    text = README.read_text()
    section = text[text.index("## Next steps") :].split("\n## ")[0]
    return re.findall(r"`([^`]+)`", section)


def test_the_next_steps_name_real_targets_and_overrides():
    """Each `make X` is a target; each set of overrides composes and sets what it names."""
    import yaml
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from xor_lightning.config import CONF_DIR

    spans = next_steps()
    targets = [s.split()[1] for s in spans if s.startswith("make ")]
    assert set(targets) <= set(PRINTS) and len(targets) >= 8
    runs = [re.sub(r"^make train ARGS='(.*)'$", r"\1", s) for s in spans]
    overrides = [r.split() for r in runs if "=" in r and "<" not in r and "make" not in r]
    assert len(overrides) >= 6
    for args in overrides:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose("train", args, return_hydra_config=True)
        for key, value in (arg.split("=") for arg in args):
            if key in cfg.hydra.runtime.choices:  # a config group: its option was chosen
                assert cfg.hydra.runtime.choices[key] == value
            else:
                assert OmegaConf.select(cfg, key) == yaml.safe_load(value)


# Words about how the project was made, which a reader has no context for: issue numbers,
# numbered rounds of work, sessions and helpers, a machine on loan. Each pattern with
# a phrase it catches (each built in two pieces, so that this file does not hold the phrase).
HISTORY = [
    (r"\bissues? ?#?\d+", "see iss" + "ue 42"),
    (r"\bthe iss" r"ue's\b", "as the iss" + "ue's text says"),
    (r"\bthis iss" r"ue\b", "as this iss" + "ue asks"),
    (r"\bthe fixes of\b", "after the fi" + "xes of a typo"),
    (r"\b(?:work )?rounds? \d+\b", "a rou" + "nd 2 of cards"),
    (r"\blent\b", "a book le" + "nt to a friend"),
    (r"\bsub-?agents?\b", "a sub" + "agent ran it"),
    (r"\b(?:this|previous|earlier|helper) sessions?\b", "as an earlier ses" + "sion said"),
]
# The files a reader meets: the README, the docs, the code, the tests, the bench scripts,
# the configs, the plugin packages and the Makefile.
SPEAKING = [REPO / "README.md", REPO / "Makefile"] + [
    p
    for top in ("docs", "src", "tests", "bench", "conf", "plugins")
    for p in sorted((REPO / top).rglob("*"))
    if p.is_file() and "__pycache__" not in p.parts
]


def history_words(path: Path) -> list[str]:
    """Each line of a text file that speaks of how the project was made (binary files:
    none)."""
    data = path.read_bytes()
    if b"\0" in data:
        return []
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return []
    return [
        f"{path.name}:{n}: {line.strip()}"
        for n, line in enumerate(text.splitlines(), 1)
        if any(re.search(pattern, line, re.I) for pattern, _ in HISTORY)
    ]


def test_the_project_speaks_of_itself_not_of_how_it_was_made():
    assert len(SPEAKING) > 100
    assert [hit for path in SPEAKING for hit in history_words(path)] == []


def test_words_about_how_the_project_was_made_are_caught(tmp_path):
    page = tmp_path / "page.md"
    for pattern, phrase in HISTORY:
        page.write_text(f"# A page\n\nSome text; {phrase}.\n")
        assert history_words(page) == [f"page.md:3: Some text; {phrase}."], pattern
    # and what the project's own words are: TensorBoard's session groups, round numbers
    page.write_text("Number of matching session groups, in round numbers; round(2.5).\n")
    assert history_words(page) == []


GLOSSARY = DOCS / "glossary.md"
# Every word a learner of the chapter meets before it is explained, and Lightning's and
# Hydra's words: each a heading of docs/glossary.md that the README links.
TERMS = ["Trainer", "LightningModule hooks", "callback", "automatic optimization",
         "manual optimization", "fit", "epochs count from 0", "chunk", "config group",
         "override", "`_target_`", "`_partial_`", "resolver", "multirun", "sweep", "launcher",
         "sweeper", "rooms", "stacked", "vectorised", "sub-run", "session group",
         "`hparamsLimit`", "Φ"]  # fmt: skip
# Where the README first uses a term in its text (fenced blocks aside): linked there.
FIRST_USES = {
    "callback": r"\bcallback\b",
    "automatic optimization": r"automatic optimization",
    "fit": r"\bfit\b",
    "config group": r"\bgroups?\b",
    "override": r"\boverrides?\b",
    "`_target_`": r"_target_|Hydra \[?targets",
    "`_partial_`": r"_partial_",
    "multirun": r"\bmultirun\b",
    "sweep": r"\bsweeps?\b",
    "launcher": r"(?<![/\w])launcher\b(?!=)",
    "sweeper": r"\bsweeper\b",
    "rooms": r"\brooms?\b",
    "stacked": r"\bstacked\b(?!/)",
    "vectorised": r"\bvectorised\b",
}


def unlinked_terms(readme: str, glossary: str) -> list[str]:
    """The terms missing from the glossary's headings, not linked from the README, or not
    linked where the README first uses them."""
    headings = set(re.findall(r"^#{2,4} (.+)$", unfenced(glossary), re.M))
    missing = [f"{t}: no heading" for t in TERMS if t not in headings]
    links = set(LINK.findall(prose(readme)))
    missing += [f"{t}: not linked" for t in TERMS if f"docs/glossary.md#{slug(t)}" not in links]
    text = unfenced(readme)
    for term, used in FIRST_USES.items():
        first = re.search(used, text, re.I)
        to_it = re.escape(f"](docs/glossary.md#{slug(term)})")
        spans = [m.span() for m in re.finditer(rf"\[[^\]]*{to_it}", text)]
        if not first or not any(a <= first.end() and first.start() < b for a, b in spans):
            missing.append(f"{term}: not linked where first used")
    return missing


def test_the_glossary_explains_every_term_and_the_readme_links_each():
    assert unlinked_terms(README.read_text(), GLOSSARY.read_text()) == []
    assert "](docs/glossary.md)" in README.read_text()


def test_a_term_missing_or_unlinked_is_caught():
    readme, glossary = README.read_text(), GLOSSARY.read_text()
    assert unlinked_terms(readme, glossary.replace("### resolver", "### resolvers")) == [
        "resolver: no heading"
    ]
    unlinked = readme.replace("[resolver](docs/glossary.md#resolver)", "resolver")
    assert unlinked_terms(unlinked, glossary) == ["resolver: not linked"]
    first = readme.replace("[rooms](docs/glossary.md#rooms) of their own", "rooms of their own")
    assert unlinked_terms(first, glossary) == ["rooms: not linked where first used"]
    earlier = readme.replace("## Start", "A callback.\n\n## Start")
    assert unlinked_terms(earlier, glossary) == ["callback: not linked where first used"]


# The reading order's files that use the glossary's words point to it.
READING = ["src/xor_lightning/module.py", "src/xor_lightning/tasks.py",
           "src/xor_lightning/datamodule.py", "src/xor_lightning/train.py", "conf/train.yaml",
           "conf/model/mlp.yaml"]  # fmt: skip


def test_the_reading_orders_files_point_to_the_glossary():
    rows = doc_table("README.md", "## Read the code in this order")
    assert set(READING) <= {row[1].strip("`") for row in rows}
    assert [f for f in READING if "docs/glossary.md" not in (REPO / f).read_text()] == []
