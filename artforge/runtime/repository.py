"""A model repository in Triton's layout: <repo>/<name>/<version>/model.onnx.

Nothing is cached: every call looks at the folder again, so models copied in
while a server runs are seen, and a listing never shows a model deleted since.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, TypeVar

from artforge import accuracy
from artforge.errors import ArtforgeError, InvalidInputError, NotFoundError, WrongKindError
from artforge.runtime.backends import create_backend, inspect_backend, registered_artifacts
from artforge.runtime.models import Classifier, Generator, Model, Stylizer, check_contract, model_for, read_metadata

M = TypeVar("M", bound=Model)

CONFIG = "config.pbtxt"
_MAX_BATCH = re.compile(r"^\s*max_batch_size\s*:\s*(\d+)", re.MULTILINE)


def _is_version(path: Path) -> bool:
    return path.name.isascii() and path.name.isdigit() and path.is_dir()


class Repository:
    """The models under one folder; see the module docstring for the layout."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise NotFoundError(f"model repository {self.path} does not exist or is not a folder")

    def __repr__(self) -> str:
        return f"Repository({str(self.path)!r})"

    def names(self) -> list[str]:
        """Folders that look like models: a config.pbtxt or at least one integer version folder."""
        names = []
        for child in self.path.iterdir():
            if child.is_dir() and not child.name.startswith((".", "_")) and (
                    (child / CONFIG).is_file() or any(_is_version(p) for p in child.iterdir())):
                names.append(child.name)
        return sorted(names)

    def _folder(self, name: str) -> Path:
        # Checking against the listing (not just joining paths) also stops
        # names like "../x" arriving from a network client.
        names = self.names()
        if name not in names:
            available = ", ".join(names) if names else "none: the repository is empty"
            raise NotFoundError(f"no model named {name!r} in {self.path}; available: {available}")
        return self.path / name

    def versions(self, name: str) -> list[int]:
        """Version numbers of `name` that hold a loadable artifact file, ascending."""
        artifacts = registered_artifacts()
        return sorted(int(p.name) for p in self._folder(name).iterdir()
                      if _is_version(p) and any((p / a).is_file() for a in artifacts))

    def version_path(self, name: str, version: int | str | None = None) -> Path:
        """The folder of one version (the latest when version is None)."""
        versions = self.versions(name)
        if not versions:
            raise NotFoundError(f"model {name!r} has no versions: expected {self.path / name}/<number>/"
                                f"{' or '.join(registered_artifacts())}")
        if version is None:
            return self.path / name / str(versions[-1])
        if isinstance(version, str) and version.isascii() and version.isdigit():
            version = int(version)
        if isinstance(version, bool) or not isinstance(version, int):
            raise InvalidInputError(f"a model version must be a whole number, got {version!r}")
        if version not in versions:
            raise NotFoundError(f"model {name!r} has no version {version}; available versions: "
                                f"{', '.join(map(str, versions))}")
        return self.path / name / str(version)

    def max_batch_size(self, name: str) -> int | None:
        """Triton's max_batch_size from config.pbtxt when present and positive."""
        try:
            match = _MAX_BATCH.search((self.path / name / CONFIG).read_text(errors="replace"))
        except OSError:
            return None
        return (int(match.group(1)) or None) if match else None

    def load(self, name: str, version: int | str | None = None, backend: str = "auto",
             threads: int | None = None) -> Model:
        """Load a model as a Classifier, Generator or Stylizer (latest version by default).

        NotFoundError for an unknown name or version, ModelLoadError for a malformed artifact.
        """
        folder = self.version_path(name, version)
        loaded = create_backend(folder, backend, threads)
        return model_for(loaded, name=name, version=int(folder.name), max_batch_size=self.max_batch_size(name))

    def classifier(self, name: str, version: int | str | None = None, backend: str = "auto",
                   threads: int | None = None) -> Classifier:
        """Load a classifier (WrongKindError when `name` is another kind)."""
        return self._load_kind(Classifier, name, version, backend, threads)

    def generator(self, name: str, version: int | str | None = None, backend: str = "auto",
                  threads: int | None = None) -> Generator:
        """Load a generator (WrongKindError when `name` is another kind)."""
        return self._load_kind(Generator, name, version, backend, threads)

    def stylizer(self, name: str, version: int | str | None = None, backend: str = "auto",
                 threads: int | None = None) -> Stylizer:
        """Load a stylizer (WrongKindError when `name` is another kind)."""
        return self._load_kind(Stylizer, name, version, backend, threads)

    def names_of_kind(self, kind: str) -> list[str]:
        """The models whose latest version is of `kind` (unreadable ones are left out)."""
        return [entry["name"] for entry in self.describe() if entry.get("kind") == kind]

    def _load_kind(self, cls: type[M], name: str, version: int | str | None, backend: str,
                   threads: int | None) -> M:
        # The kind is read from the metadata first, so a wrong name costs no backend load (or auto trial).
        folder = self.version_path(name, version)
        inspected = inspect_backend(folder)
        kind = read_metadata(inspected, str(inspected.path)).kind
        if kind != cls.kind:
            raise WrongKindError(f"model {name} is a {kind}, not a {cls.kind}; {cls.kind}s in {self.path}: "
                                 f"{', '.join(self.names_of_kind(cls.kind)) or 'none'}")
        model = self.load(name, version, backend, threads)
        assert isinstance(model, cls)  # the metadata read above decided the class
        return model

    def describe(self) -> list[dict[str, Any]]:
        """One entry per model: name, versions and, for the latest version, kind,
        metadata, I/O specs and accuracy budget (what `auto` may deviate from fp32),
        or `error` (one sentence) when it cannot be read."""
        entries = []
        for name in self.names():
            entry: dict[str, Any] = {"name": name, "versions": self.versions(name)}
            try:
                folder = self.version_path(name)
                backend = inspect_backend(folder)
                meta = read_metadata(backend, str(backend.path))
                check_contract(meta, backend.inputs, backend.outputs, str(backend.path))
                budget = accuracy.read_budget(self.path / name).for_kind(meta.kind)
            except ArtforgeError as error:
                entry["error"] = str(error)
            else:
                entry.update(
                    version=int(folder.name), kind=meta.kind, path=str(backend.path),
                    inputs=[s.as_dict() for s in backend.inputs], outputs=[s.as_dict() for s in backend.outputs],
                    labels=list(meta.labels), input_size=meta.input_size, latent_size=meta.latent_size,
                    output_size=meta.output_size, size_multiple=meta.size_multiple,
                    max_batch_size=self.max_batch_size(name), budget=budget)
            entries.append(entry)
        return entries
