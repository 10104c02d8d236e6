"""Stylize one image file or a whole folder tree (mirrored into the output).

A corrupt file never stops the run: it is counted and reported. Outputs are
written atomically, so an interrupted run leaves no partial file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from artforge.errors import ArtforgeError
from artforge.files import plan_outputs
from artforge.runtime.imageio import read_image, write_image


@dataclass
class Summary:
    done: int = 0
    skipped: int = 0
    failed: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)


def stylize_paths(models: list, source: Path, output: Path, fmt: str | None = None, quality: int | None = None,
                  max_side: int | None = None, progress: bool = True, per_model: bool = False) -> Summary:
    """Stylize `source` (file or folder) with each model into `output`."""
    by_name = {model.name: model for model in models}
    plan, skipped = plan_outputs(Path(source), Path(output), fmt, list(by_name), per_model)
    summary = Summary(skipped=skipped)
    for path, name, target in tqdm(plan, desc="stylize", unit="img", disable=not progress):
        model = by_name[name]
        try:
            image = read_image(path)
            result = model.stylize(image, max_side=max_side)
            if target.suffix == ".jpg" and result.ndim == 3 and result.shape[2] == 4:
                result = result[..., :3]  # JPEG has no alpha channel
            write_image(target, result, quality=quality)
        except ArtforgeError as exc:
            summary.failed += 1
            summary.failures.append((str(path), str(exc)))
            continue
        summary.done += 1
        summary.outputs.append(target)
    return summary
