"""The docs stay true to the code: every repository path, ``module.function`` name and params key that
README.md and docs/*.md write in backticks (and every ``-S key=value`` and ``python -m module`` in their
command blocks) exists; a params value given with its key is one the schema allows.

Static and fast (no project module is imported): paths are looked up on disk, names in the AST of the file
that should define them, keys in stage_support/schema.py. Names outside the project (``ray.init``) and
paths of run outputs (``data/``, ``models/``, ``metrics/``, ``logs/``...) are not checked.
"""
from __future__ import annotations

import ast
import functools
import glob
import re
from pathlib import Path

import pytest
import yaml

from stage_support import params as P
from stage_support import schema

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

PACKAGES = ("pipeline", "stages", "stage_support", "bench", "tests", "scripts")  # dotted names checked
TRACKED_DIRS = (*PACKAGES, "cluster", "docs", "inputs", ".ci")  # paths checked (others: outputs, user files)
ROOT_FILES = {"dvc.yaml", "dvc.lock", "params.yaml", "pyproject.toml", "Makefile", "requirements.lock", "README.md"}
FILE_SUFFIXES = (".py", ".md", ".yaml", ".yml", ".json", ".jsonl", ".csv", ".parquet", ".txt", ".lock", ".toml",
                 ".mat", ".sh", ".log", ".png", ".jpg", ".pkl", ".pth", ".safetensors", ".cfg", ".html", ".mp4")  # file names
SECTIONS = {**schema.SECTIONS, "placement": schema.PLACEMENT, "checks": schema.CHECKS}
# The catalogue of wrong inputs and their messages (misspelled keys, refused values): its params keys and
# values are wrong on purpose; its paths and names are checked.
WRONG_ON_PURPOSE = {"docs/failures.md"}
# Names and files of other projects that the docs quote (mmdet, DVC, the V-COCO evaluator, CUDA builds).
EXTERNAL_NAMES = {"init_cfg", "TORCH_CUDA_ARCH_LIST", "hico_benchmark", "_do_agent_eval", "_do_role_eval",
                  "save_deps", "vsrl_eval.py", "script_pick_annotations.py"}

SPAN = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
SET_PARAM = re.compile(r"-S\s+['\"]?([\w.]+=[^'\"\s]+)")
RUN_MODULE = re.compile(r"python -m ([\w.]+)")


def _spans(text: str):
    """(line number, text) of every inline code span, outside fenced blocks."""
    for i, line in enumerate(FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text).splitlines(), 1):
        for m in SPAN.finditer(line):
            yield i, m.group(1)


def _blocks(text: str):
    """(line number, text) of every line inside fenced blocks."""
    for m in FENCE.finditer(text):
        first = text[:m.start()].count("\n") + 1
        for j, line in enumerate(m.group(0).splitlines()):
            yield first + j, line


# ---- names -------------------------------------------------------------------------------------------------

@functools.cache
def _defined(path: Path) -> dict[str, ast.AST | None]:
    """Top-level names of a module: defs, classes (node kept, for their members), assignments, imports."""
    names: dict[str, ast.AST | None] = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names[node.name] = node
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target]):
                for n in ast.walk(target):
                    if isinstance(n, ast.Name):
                        names[n.id] = None
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                names[(alias.asname or alias.name).split(".")[0]] = None
        elif isinstance(node, ast.If):  # TYPE_CHECKING / platform blocks
            for sub in ast.walk(node):
                if isinstance(sub, (ast.FunctionDef, ast.ClassDef)):
                    names[sub.name] = sub
    return names


def _members(cls: ast.ClassDef) -> set[str]:
    found = set()
    for node in cls.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            found.add(node.target.id)
        elif isinstance(node, ast.Assign):
            found |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    # attributes set in methods (self.x = ...)
    for node in ast.walk(cls):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self" \
                and isinstance(node.ctx, ast.Store):
            found.add(node.attr)
    return found


def _module_file(parts: list[str]) -> Path | None:
    base = ROOT.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py", base / "__main__.py"):
        if candidate.is_file():
            return candidate
    return None


def name_problem(dotted: str) -> str | None:
    """Why ``pipeline.x.y.name`` (or ``Class.member`` after it) names nothing, or None."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        path = _module_file(parts[:cut])
        if path is None:
            continue
        rest = parts[cut:]
        if not rest:
            return None
        names = _defined(path)
        if rest[0] not in names:
            return f"{'.'.join(parts[:cut])} ({path.relative_to(ROOT)}) defines no {rest[0]}"
        node = names[rest[0]]
        if len(rest) > 1 and isinstance(node, ast.ClassDef) and rest[1] not in _members(node):
            return f"{'.'.join(parts[:cut + 1])} has no member {rest[1]}"
        return None
    return f"no module {parts[0]}" + (f".{parts[1]}" if len(parts) > 1 else "")


def file_name_problem(path: Path, name: str) -> str | None:
    """``path: name`` / ``path::test_name`` forms: the file defines ``name``; an abbreviated one (``x...``,
    ``..._x``: a test's name or a parametrized case's id) appears in the file."""
    if name.endswith("...") or name.startswith("..."):
        return None if name.strip("._") in path.read_text() else f"{path.name} holds no {name}"
    head = name.split(".")[0].split("[")[0]
    if head not in _defined(path):
        return f"{path.relative_to(ROOT)} defines no {head}"
    return None


# ---- paths -------------------------------------------------------------------------------------------------

def _expand(pattern: str) -> list[str]:
    """Brace alternatives (``{a,b}``) expanded; ``<placeholder>`` becomes ``*``."""
    pattern = re.sub(r"<[^>]*>", "*", pattern)
    m = re.search(r"\{([^{}]*)\}", pattern)
    if not m:
        return [pattern]
    return [x for alt in m.group(1).split(",") for x in _expand(pattern[:m.start()] + alt + pattern[m.end():])]


def path_problem(token: str) -> str | None:
    """Why a repository path (``pipeline/x.py``, ``docs/{a,b}.md``, ``tests/x.py::test``) does not exist."""
    token, _, test = token.partition("::")
    for candidate in _expand(token.rstrip("/")):
        if not glob.glob(str(ROOT / candidate)):
            return f"{candidate} does not exist"
    if test and "*" not in token and "{" not in token:
        return file_name_problem(ROOT / token, test)
    return None


# ---- params ------------------------------------------------------------------------------------------------

def _param(dotted: str):
    node = SECTIONS
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def key_problem(dotted: str, value: str | None = None) -> str | None:
    """Why ``dotted`` is no params key (moved keys are named by the messages that refuse them), or why
    ``value`` (``a`` or ``a,b`` as ``-S`` takes it) is not allowed for it."""
    spec = _param(dotted)
    if spec is None:
        return None if dotted in schema.MOVED else f"no params key {dotted}"
    if value is None or not isinstance(spec, schema.Param) or re.search(r"[|<>]|\.\.\.|^[A-Z]+$", value):
        return None
    items = [value] if value.startswith("[") or spec.kind in ("str", "any") and "," not in value else value.split(",")
    for item in items:
        parsed = yaml.safe_load(item)
        if spec.kind == "float" and not isinstance(parsed, bool):
            try:  # DVC reads -S values as YAML 1.2, where 1e-4 is a number (PyYAML's 1.1 leaves it a string)
                parsed = float(parsed)
            except (TypeError, ValueError):
                pass
        problem = P.check_value(dotted, parsed, spec)
        if problem:
            return problem
    return None


# ---- one span ----------------------------------------------------------------------------------------------

def token_problem(token: str, keys: bool = True) -> str | None:
    token = token.strip("'\"()[],;")
    if not token.endswith("..."):
        token = token.rstrip(".:")
    if not token or token.startswith(("...", "../", "/", "~", "$", "-", "http")) or "://" in token:
        return None
    first = re.split(r"[/.:=]", token, maxsplit=1)[0]
    if "/" in token or token in ROOT_FILES:
        return path_problem(token) if first in TRACKED_DIRS or token in ROOT_FILES else None
    if re.fullmatch(r"test_\w+(\.py)?::\S+", token):  # test_file.py::test_name, directory left out
        file, _, test = token.partition("::")
        hits = [p for p in (ROOT / "tests").rglob(file.removesuffix(".py") + ".py") if p.is_file()]
        return file_name_problem(hits[0], test) if hits else f"no test file {file}"
    if token.endswith(FILE_SUFFIXES) and "=" not in token:
        return None  # a bare file name is no repository path (data files, outputs, other projects' files)
    key, eq, value = token.partition("=")
    if first in SECTIONS and "." in key and re.fullmatch(r"[\w.]+", key):
        return key_problem(key, value if eq else None) if keys else None
    if first in PACKAGES and re.fullmatch(r"[\w.:]+", token) and "." in token:
        return name_problem(token.replace(":", "."))
    return None


def span_problems(span: str, keys: bool = True) -> list[str]:
    """What names nothing in one code span (``keys=False``: params keys and values are not checked)."""
    found = []
    m = re.fullmatch(r"(\S+\.py):{1,2}\s*(\w[\w.]*(?:\.\.\.)?)", span)  # `pipeline/x.py: name`, `x.py::test`
    if m and "/" in m.group(1):
        problem = path_problem(m.group(1)) or file_name_problem(ROOT / m.group(1), m.group(2))
        return [problem] if problem else []
    m = re.fullmatch(r"([\w.]+): (\S+)", span)  # `train.loss: softmax_ce`
    if m and m.group(1).split(".")[0] in SECTIONS:
        problem = key_problem(m.group(1), m.group(2)) if keys else None
        return [problem] if problem else []
    for token in span.split():
        problem = token_problem(token, keys)
        if problem:
            found.append(problem)
    return found


@functools.cache
def _code_words() -> frozenset[str]:
    """Every identifier and word of a string the project's Python holds (defs, names, attributes,
    arguments, imports, column and key names in strings): what a bare name in the docs may refer to."""
    words: set[str] = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if path == Path(__file__):  # its examples of wrong names
                continue
            for n in ast.walk(ast.parse(path.read_text())):
                if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    words.add(n.name)
                elif isinstance(n, ast.Name):
                    words.add(n.id)
                elif isinstance(n, ast.Attribute):
                    words.add(n.attr)
                elif isinstance(n, (ast.arg, ast.keyword)) and n.arg:
                    words.add(n.arg)
                elif isinstance(n, ast.alias):
                    words.add((n.asname or n.name).split(".")[-1])
                elif isinstance(n, ast.Constant) and isinstance(n.value, str):
                    words.update(re.findall(r"\w+", n.value))
    return frozenset(words)


def bare_name_problem(span: str) -> str | None:
    """A bare code-like name (``read_class_space``, ``ClassSpace``, ``check_loss()``) the code never holds."""
    word = span.strip().removesuffix("()")
    if not re.fullmatch(r"[A-Za-z_]\w*", word) or not ("_" in word.strip("_") or re.search(r"[a-z][A-Z]", word)):
        return None
    return None if word in _code_words() or word in EXTERNAL_NAMES else f"no name {word} in the code"


def doc_problems(text: str, name: str) -> list[str]:
    """Every reference of a Markdown text that names nothing, as ``name:line: what: why``."""
    keys = name not in WRONG_ON_PURPOSE
    problems = [f"{name}:{line}: `{span}`: {p}" for line, span in _spans(text) for p in span_problems(span, keys)]
    problems += [f"{name}:{line}: `{span}`: {p}" for line, span in _spans(text) if (p := bare_name_problem(span))]
    # In a paragraph about one folder ("**`pipeline/cli/`**: ... `hoi.py` ..."), a bare file name is in it.
    folder = None
    for line_no, line in enumerate(text.splitlines(), 1):
        m = re.match(r"\*\*`([\w/]+/)`\*\*", line)
        folder = m.group(1) if m else (None if not line.strip() else folder)
        for span in SPAN.findall(line) if folder else ():
            if re.fullmatch(r"\w+\.py", span) and span not in EXTERNAL_NAMES and not (ROOT / folder / span).is_file():
                problems.append(f"{name}:{line_no}: `{span}`: no {folder}{span}")
    for line, code in _blocks(text):
        for assignment in SET_PARAM.findall(code) if keys else ():
            key, _, value = assignment.partition("=")
            problem = key_problem(key, value)
            if problem:
                problems.append(f"{name}:{line}: -S {assignment}: {problem}")
        for module in RUN_MODULE.findall(code):
            if module.split(".")[0] in PACKAGES and _module_file(module.split(".")) is None:
                problems.append(f"{name}:{line}: python -m {module}: no such module")
    return problems


@pytest.mark.parametrize("doc", DOCS, ids=[p.name for p in DOCS])
def test_every_path_name_and_params_key_in_the_docs_exists(doc):
    assert doc_problems(doc.read_text(), str(doc.relative_to(ROOT))) == []


def test_the_checker_finds_what_is_wrong():
    """Each kind of reference, right and wrong (the checker would otherwise pass by finding nothing)."""
    good = ["`pipeline/cli/evaluate_results.py`", "`pipeline.storage.atomic_path`", "`train.lr`",
            "`pipeline/classes/space.py: model_classes`", "`docs/{training,params}.md`", "`logs/<stage>.log`",
            "`tests/unit/test_console.py::test_terminal_gets_the_stage_lines_and_the_log_gets_everything`",
            "`score_regions.masked_layers=1,2`", "`train.loss: softmax_ce`", "`pipeline.classes.space.ClassSpace.from_table`",
            "`python -m stage_support.schema`", "`train.lr=1e-4`", "`placement.train.storage_path`"]
    bad = ["`pipeline/cli/evaluate.py`", "`pipeline.classes.space.read_class_space`", "`train.learning_rate`",
           "`pipeline/classes/space.py: read_class_space`", "`docs/{training,nothing}.md`",
           "`tests/unit/test_console.py::test_that_does_not_exist`", "`score_regions.masked_layers=0,1,2`",
           "`train.loss: lse-sign`", "`pipeline.classes.space.ClassSpace.from_tables`", "`train.lr=2`",
           "`read_class_space`",
           "`pipeline.nothing.here`"]
    for span in good:
        assert span_problems(span[1:-1]) == [], span
    for span in bad:
        assert span_problems(span[1:-1]) or bare_name_problem(span[1:-1]), span
    assert bare_name_problem("ClassSpace") is None and bare_name_problem("check_loss()") is None
    package = "**`pipeline/cli/`**: the command: `commands.py`, `evaluate.py` (`defr evaluate`)\n"
    assert [p.split(": ", 1)[1] for p in doc_problems(package, "p.md")] == ["`evaluate.py`: no pipeline/cli/evaluate.py"]
    doc = "x\n```bash\ndvc exp run --queue -S 'score_regions.masked_layers=0,1,2'\npython -m stages.nothing\n```\n"
    assert len(doc_problems(doc, "probe.md")) == 2
