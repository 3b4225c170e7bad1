"""Class prompts for the text encoders, from the classes table: templates over a class's fields, the class's
own free-text prompt, or a user's prompts file.

A prompts file holds one prompt per class, in the hoi order of the classes table: either one prompt per
line (UTF-8 text) or a JSON list of strings. It is validated against the number of classes.
"""
from __future__ import annotations

import json
import string

import pyarrow as pa

from pipeline import storage

DEFAULT_TEMPLATE = "a person {verb_ing} {a_object}"
DEFAULT_NO_INTERACTION_TEMPLATE = "a person and {a_object}"
DEFAULT_NAME_TEMPLATE = "a photo of a person {name}"
from pipeline.choices import TEMPLATE_FIELDS
NO_INTERACTION = "no_interaction"   # the verb of HICO's no-interaction classes


def read_prompts_file(uri: str, expected: int) -> list[str]:
    """Reads a prompts file (local path or fsspec URI): one prompt per line, or a JSON list.

    Args:
        uri: the file; a ``.json`` file or any text that starts with ``[`` is read as a JSON list.
        expected: the number of classes the prompts must cover.

    Returns:
        The prompts, stripped of surrounding whitespace.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: naming ``prompts_file`` and the line or item, when a prompt is empty or not a string,
            the JSON does not parse, or the count differs from ``expected``.
    """
    if not storage.exists(uri):
        raise FileNotFoundError(f"prompts_file {uri!r} does not exist (expected one prompt per class)")
    with storage.open_file(uri, "rb") as f:
        text = f.read().decode("utf-8-sig")
    if uri.endswith(".json") or text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"prompts_file {uri!r} is not valid JSON: {e}") from e
        if not isinstance(items, list):
            raise ValueError(f"prompts_file {uri!r}: expected a JSON list of strings, got "
                             f"{type(items).__name__}")
        where = "item"
    else:
        items = text.splitlines()
        where = "line"
    prompts = []
    for i, p in enumerate(items):
        if not isinstance(p, str):
            raise ValueError(f"prompts_file {uri!r} {where} {i + 1}: expected a string, got {p!r}")
        if not p.strip():
            raise ValueError(f"prompts_file {uri!r} {where} {i + 1}: empty prompt "
                             "(every class needs a non-empty prompt)")
        prompts.append(p.strip())
    if len(prompts) != expected:
        raise ValueError(f"prompts_file {uri!r} has {len(prompts)} prompts; expected {expected} "
                         "(one per row of the classes table, in hoi order)")
    return prompts


def template_fields(template: str, name: str = "template") -> list[str]:
    """The ``{field}`` names of a ``str.format`` template; raises naming ``name`` for an unknown field."""
    fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    unknown = [f for f in fields if f not in TEMPLATE_FIELDS]
    if unknown:
        raise ValueError(f"{name} {template!r} uses unknown field(s) {unknown}; "
                         f"allowed: {', '.join('{' + f + '}' for f in TEMPLATE_FIELDS)}")
    return fields


def article(noun: str) -> str:
    return "an" if noun[:1].lower() in "aeiou" else "a"


def _fields(row: dict) -> dict[str, str]:
    """Template values of one class; underscores read as spaces (HICO writes ``sports_ball``)."""
    out = {k: str(row[k]).replace("_", " ") for k in ("verb", "verb_ing", "object", "name", "category")
           if row.get(k) is not None}
    if "object" in out:
        out["a_object"] = f"{article(out['object'])} {out['object']}"
    return out


def class_prompts(classes: pa.Table, template: str = DEFAULT_TEMPLATE,
                  no_interaction_template: str = DEFAULT_NO_INTERACTION_TEMPLATE,
                  name_template: str = DEFAULT_NAME_TEMPLATE, prompts_file: str = "") -> list[str]:
    """One prompt per class of a classes table, in class-id order.

    Per class: the ``prompts_file`` line when a file is given; else the class's own ``prompt``; else, for a
    class with a verb and an object, ``template`` (``no_interaction_template`` when the verb is
    ``no_interaction``); else ``name_template`` (e.g. MPII activities: ``{name}``, ``{category}``).

    Args:
        classes: a checked classes table (:func:`pipeline.classes.check_classes`).
        template, no_interaction_template, name_template: ``str.format`` templates over
            :data:`TEMPLATE_FIELDS` (``a_object`` is the object with its article).
        prompts_file: "" for the rules above, else a file as in :func:`read_prompts_file`.

    Raises:
        ValueError: naming the template param and the class when a template uses an unknown field or a
            field the class does not have; see :func:`read_prompts_file` for a prompts file.
    """
    if prompts_file:
        return read_prompts_file(prompts_file, expected=classes.num_rows)
    templates = {"template": template, "no_interaction_template": no_interaction_template,
                 "name_template": name_template}
    used = {name: template_fields(t, name) for name, t in templates.items()}
    out = []
    for row in classes.to_pylist():
        if row.get("prompt"):
            out.append(str(row["prompt"]).strip())
            continue
        if row.get("verb") is not None and row.get("object") is not None:
            which = "no_interaction_template" if row["verb"] == NO_INTERACTION else "template"
        else:
            which = "name_template"
        values = _fields(row)
        missing = [f for f in used[which] if f not in values]
        if missing:
            raise ValueError(f"{which} {templates[which]!r} uses {{{missing[0]}}}, which class {row['hoi']} "
                             f"({row.get('name')!r}) does not have; it has {sorted(values)} (give the class a "
                             "prompt, or use other fields)")
        out.append(templates[which].format(**values))
    return out
