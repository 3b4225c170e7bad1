"""Class prompts for the text encoders: from a vocabulary template or from a user's prompts file.

A prompts file holds one prompt per class, in the hoi order of the classes table: either one prompt per
line (UTF-8 text) or a JSON list of strings. It is validated against the number of classes.
"""
from __future__ import annotations

import json
from collections.abc import Sequence

from pipeline import storage
from pipeline.vocab import Vocabulary, hico_vocabulary


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


def class_prompts(hois: Sequence[int], template: str, no_interaction_template: str,
                  prompts_file: str = "", vocab: Vocabulary | None = None) -> list[str]:
    """One prompt per class id: from ``prompts_file`` when given, else from the vocabulary templates.

    Args:
        hois: HOI class ids (0-based), in the order of the output.
        template: ``str.format`` template over verb, verb_ing, object, a_object.
        no_interaction_template: the template for the ``no_interaction`` classes.
        prompts_file: "" to use the templates, else a file as in :func:`read_prompts_file`.
        vocab: the vocabulary (HICO by default).

    Raises:
        ValueError: naming ``template`` / ``no_interaction_template`` (unknown field) or
            ``prompts_file`` (see :func:`read_prompts_file`); IndexError for an HOI id out of range.
    """
    if prompts_file:
        return read_prompts_file(prompts_file, expected=len(hois))
    vocab = vocab or hico_vocabulary()
    return vocab.prompts(template, no_interaction_template, hois=[int(h) for h in hois])
