"""Output names of `artforge stylize`: one per input, never shared, the same for the same inputs.

Every output gets the output suffix; the mapping is decided on the whole
set of inputs at once, so it does not depend on the order of the walk:

1. `a.jpg -> a.png` (the input's stem and the output suffix) when no other
   input wants that name and no mirrored folder has it;
2. else `a.jpg -> a.jpg.png` (the input's whole name and the suffix), when
   no input kept that name in step 1 and no other input wants it here;
3. else `a.jpg -> a.jpg~2.png` (then ~3, ...), the first name no one has,
   given in sorted order of the inputs.

Names are compared ignoring case, so that they stay distinct on a
case-insensitive file system (macOS, Windows) too. Plain Python.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import PurePath
from typing import TypeVar

P = TypeVar("P", bound=PurePath)


def _key(name: PurePath) -> str:
    return name.as_posix().casefold()


def output_names(inputs: Iterable[P], suffix: str) -> dict[P, P]:
    """input path -> output path (both relative to their folders) with `suffix` (".jpg"), injective.

    See the module docstring for the rule; the result depends only on the set of inputs.
    """
    ordered = sorted(set(inputs), key=lambda p: p.as_posix())
    # The mirrored folders are given: a file may not take a folder's name (x.png -> x.jpg next to a folder x.jpg/).
    folders = {_key(folder) for p in ordered for folder in p.parents[:-1]}
    stem_names = {p: p.with_suffix(suffix) for p in ordered}
    wanted = Counter(_key(name) for name in stem_names.values())
    names = {p: name for p, name in stem_names.items() if wanted[_key(name)] == 1 and _key(name) not in folders}
    taken = folders | {_key(name) for name in names.values()}

    rest = [p for p in ordered if p not in names]
    full_names = {p: p.with_name(p.name + suffix) for p in rest}
    wanted = Counter(_key(name) for name in full_names.values())
    for p, name in full_names.items():
        if wanted[_key(name)] == 1 and _key(name) not in taken:
            names[p] = name
    taken |= {_key(names[p]) for p in rest if p in names}

    for p in rest:
        if p in names:
            continue
        number = 2
        while _key(name := p.with_name(f"{p.name}~{number}{suffix}")) in taken:
            number += 1
        names[p] = name
        taken.add(_key(name))
    return names
