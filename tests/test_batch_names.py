"""Output names of `artforge stylize` (artforge/batch/names.py): one per input, never shared, the same
whatever the walk order. Generated name sets (seeded) full of near-collisions; the folder runs that write
these names are in tests/test_batch_executors.py."""

from __future__ import annotations

import random
from pathlib import PurePosixPath

import pytest

from artforge.batch.names import output_names

STEMS = ["a", "A", "a.jpg", "a.png", "a.jpg.jpg", "a.jpg~2", "a.png.jpg", "b", "x.jpg", "x.png"]
SUFFIXES = [".jpg", ".JPG", ".png", ".jpeg", ".webp", ".tif"]
FOLDERS = ["", "sub", "SUB", "a.jpg", "x.jpg", "sub/deeper"]


def name_set(rng: random.Random) -> list[PurePosixPath]:
    """Up to 40 input paths drawn from a small alphabet, so that most of them collide somehow."""
    paths = {PurePosixPath(rng.choice(FOLDERS), rng.choice(STEMS) + rng.choice(SUFFIXES))
             for _ in range(rng.randint(1, 40))}
    folders = {folder for p in paths for folder in p.parents}
    return sorted(p for p in paths if p not in folders)  # a path cannot be a file and a folder at once


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp"])
def test_names_are_unique_stable_and_independent_of_order(suffix: str) -> None:
    rng = random.Random(f"names{suffix}")
    for _ in range(300):
        inputs = name_set(rng)
        names = output_names(inputs, suffix)
        assert set(names) == set(inputs)
        outputs = list(names.values())
        keys = [o.as_posix().casefold() for o in outputs]
        assert len(set(keys)) == len(keys), names  # injective, even where case is ignored
        folders = {folder.as_posix().casefold() for p in inputs for folder in p.parents}
        assert not folders & set(keys), names  # no output takes a mirrored folder's name
        for source, output in names.items():
            assert output.suffix == suffix and output.parent == source.parent
        shuffled = list(inputs)
        rng.shuffle(shuffled)
        assert output_names(shuffled, suffix) == names  # the walk order does not matter


def test_the_natural_name_is_kept_when_it_is_free() -> None:
    names = output_names([PurePosixPath("a.png"), PurePosixPath("sub/b.jpeg"), PurePosixPath("c.jpg")], ".jpg")
    assert {str(k): str(v) for k, v in names.items()} == {"a.png": "a.jpg", "sub/b.jpeg": "sub/b.jpg",
                                                          "c.jpg": "c.jpg"}


def test_three_inputs_that_want_one_name() -> None:
    """The case of the issue: the old renaming gave a.jpg and a.jpg.jpg the same output."""
    names = output_names([PurePosixPath(n) for n in ("a.jpg", "a.png", "a.jpg.jpg")], ".jpg")
    assert {str(k): str(v) for k, v in names.items()} == {"a.jpg.jpg": "a.jpg.jpg", "a.png": "a.png.jpg",
                                                          "a.jpg": "a.jpg~2.jpg"}
    folder = output_names([PurePosixPath("x.png"), PurePosixPath("x.jpg/y.png")], ".jpg")
    assert str(folder[PurePosixPath("x.png")]) == "x.png.jpg"  # x.jpg is a mirrored folder
