"""The resume manifest of `artforge stylize`: which outputs in OUT are finished, and made by what.

A re-run must skip finished outputs but redo them when the model or a
pixel-affecting option changed, and must not trust a file it cannot vouch
for. So the manifest (OUT/stylize-manifest.json, written atomically) records
per model the artifact identity (name, version, sha256 of the model file,
or what a server reports) and the options that change pixels, and per
output the stamp (size, mtime) of its input and of the output file written.
An output counts as done only when its record matches all of these now;
anything else (no record, edited input, output overwritten or deleted, a
record lost because the run was killed before the manifest was saved) is
redone. Redoing is always safe: writes are atomic and deterministic.

Between saves of the manifest, each finished output is also appended as one
JSON line to a hidden journal next to it (no fsync: a killed process loses
nothing the kernel already has), so a run killed with -9 is resumed from its
last finished output, not its last save; loading applies the journal (a
torn last line is ignored), saving folds it in and deletes it.

The manifest is also how the tool knows which files in OUT are its own: a
file there is written over only when this model recorded it or claimed it
(the driver claims every output it is about to write and saves the
manifest before the first write, so a file written just before a kill -9
is still known; claims of files that were never written are dropped at the
end of a run). Anything else that exists is not the tool's to replace.

Plain Python; the driver (batch/driver.py) keeps it for every executor.
Only one thread (the run's main thread) touches a Manifest.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from artforge.files import write_json_atomic

log = logging.getLogger(__name__)

MANIFEST_NAME = "stylize-manifest.json"
JOURNAL_NAME = ".stylize-manifest.journal"
FORMAT = 1
#: seconds between saves at least (the journal covers the gaps); a save never takes more than ~5% of the run
SAVE_INTERVAL_S = 30.0


def stamp(path: Path) -> list[int] | None:
    """[size, mtime_ns] of a file, None when it does not exist."""
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    def short(value: Any) -> str:
        text = "unset" if value is None else str(value)
        return text[:12] + "…" if len(text) > 16 else text

    return [f"{key} {short(old.get(key))} -> {short(new.get(key))}"
            for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]


class Manifest:
    """Finished outputs under one output folder; see the module docstring."""

    def __init__(self, folder: Path, data: dict[str, Any] | None = None) -> None:
        self.folder = Path(folder)
        self.path = self.folder / MANIFEST_NAME
        self.journal_path = self.folder / JOURNAL_NAME
        self.models: dict[str, dict[str, Any]] = {}
        for name, entry in (data or {}).get("models", {}).items():
            # claimed: outputs this model may have written that are not (or no longer) finished records
            self.models[name] = {**entry, "outputs": dict(entry.get("outputs", {})),
                                 "claimed": set(entry.get("claimed", []))}
        self._journal: Any = None
        self._dirty = False
        self._saved_at = time.monotonic()
        self._save_cost = 0.0

    @classmethod
    def load(cls, folder: Path) -> Manifest:
        """The folder's manifest; an empty one when there is none or it cannot be read (then all is redone,
        and files already there are refused as not the tool's unless --overwrite)."""
        path = Path(folder) / MANIFEST_NAME
        try:
            data = json.loads(path.read_text())
            if (not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("models"), dict)
                    or not all(isinstance(entry, dict) for entry in data["models"].values())):
                raise ValueError("unknown layout")
        except FileNotFoundError:
            return cls(folder)
        except (OSError, ValueError) as exc:
            log.warning("ignoring the unreadable manifest %s (%s): every output is redone, and those already "
                        "there are no longer known as artforge's (--overwrite replaces them)", path, exc)
            return cls(folder)
        manifest = cls(folder, data)
        manifest._replay()
        return manifest

    def _replay(self) -> None:
        """Apply the journal of a run that ended before it could save (records of models it had begun)."""
        try:
            lines = self.journal_path.read_text().splitlines()
        except OSError:
            return
        for line in lines:
            try:
                entry = json.loads(line)
                self._put(entry["model"], entry["output"], entry["record"])
            except (ValueError, KeyError, TypeError):
                continue  # a line torn by the kill: that output is simply redone
            self._dirty = True

    def _put(self, model: str, key: str, record: dict[str, Any]) -> None:
        """One finished output of `model`; the file is no other model's any more."""
        for name, entry in self.models.items():
            if name != model:
                entry["outputs"].pop(key, None)
                entry["claimed"].discard(key)
        self.models[model]["outputs"][key] = record
        self.models[model]["claimed"].discard(key)

    def begin(self, model: str, identity: dict[str, Any], options: dict[str, Any], force: bool = False) -> str | None:
        """Start recording `model` under this identity and these options.

        Returns why its earlier outputs are all redone (one sentence), or None
        when they still count (or there were none). Outputs that are redone
        stay claimed: they are still this model's files to write over.
        """
        old = self.models.get(model)
        reason = None
        if old and old.get("outputs"):
            if force:
                reason = f"{model}: --force, redoing its {len(old['outputs'])} earlier outputs"
            elif old.get("identity") != identity:
                changed = ", ".join(_differences(old.get("identity", {}), identity))
                reason = f"{model}: the model changed since the earlier outputs ({changed}); redoing them"
            elif old.get("options") != options:
                changed = ", ".join(_differences(old.get("options", {}), options))
                reason = f"{model}: options changed since the earlier outputs ({changed}); redoing them"
        keep = old is not None and reason is None and not force
        outputs = (old or {}).get("outputs", {})
        claimed = set((old or {}).get("claimed", set())) | (set() if keep else set(outputs))
        self.models[model] = {"identity": identity, "options": options, "outputs": outputs if keep else {},
                              "claimed": claimed}
        self._dirty = True
        return reason

    def _key(self, output: Path) -> str:
        try:
            return Path(output).relative_to(self.folder).as_posix()
        except ValueError:
            return Path(output).as_posix()

    def is_current(self, model: str, output: Path, input_stamp: list[int] | None) -> bool:
        """True when `output` is a finished output of `model` from its input as it is now (stamped)."""
        record = self.models.get(model, {}).get("outputs", {}).get(self._key(output))
        if not record:
            return False
        return record.get("input_stamp") == input_stamp and record.get("output_stamp") == stamp(output)

    def owns(self, model: str, output: Path) -> bool:
        """True when `output` is this model's own file (recorded or claimed), which a run may write over."""
        entry = self.models.get(model, {})
        key = self._key(output)
        return key in entry.get("outputs", {}) or key in entry.get("claimed", set())

    def claim(self, model: str, outputs: list[Path]) -> None:
        """Note outputs `model` is about to write (begun first); save before writing them."""
        self.models[model]["claimed"].update(self._key(output) for output in outputs)
        self._dirty = True

    def drop_unwritten_claims(self) -> None:
        """Forget claims of files that do not exist (never written, or deleted): nothing there to vouch for."""
        for entry in self.models.values():
            missing = {key for key in entry["claimed"] if not (self.folder / key).exists()}
            if missing:
                entry["claimed"] -= missing
                self._dirty = True

    def record(self, model: str, output: Path, source: Path, input_stamp: list[int] | None,
               output_stamp: list[int] | None) -> None:
        """Remember a finished output (input_stamp taken before the input was read)."""
        key = self._key(output)
        record = {"input": str(source), "input_stamp": input_stamp, "output_stamp": output_stamp}
        self._put(model, key, record)
        self._dirty = True
        if self._journal is None:
            self._journal = self.journal_path.open("a", encoding="utf-8")
        self._journal.write(json.dumps({"model": model, "output": key, "record": record}) + "\n")
        self._journal.flush()  # into the kernel: survives kill -9

    def save(self) -> None:
        if not self._dirty:
            return
        started = time.monotonic()
        models = {name: {**entry, "claimed": sorted(entry["claimed"])} for name, entry in self.models.items()}
        write_json_atomic(self.path, {"format": FORMAT, "tool": "artforge stylize", "models": models})
        # Folded into the manifest now; a kill between the two steps only replays records already there.
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        self.journal_path.unlink(missing_ok=True)
        self._saved_at = time.monotonic()
        self._save_cost = self._saved_at - started
        self._dirty = False

    def maybe_save(self) -> None:
        """Save when SAVE_INTERVAL_S has passed, and at most 5% of the time (a huge folder's manifest is big)."""
        if self._dirty and time.monotonic() - self._saved_at >= max(SAVE_INTERVAL_S, 20 * self._save_cost):
            self.save()
