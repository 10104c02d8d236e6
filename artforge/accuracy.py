"""A model's accuracy budget, and how far a backend's outputs are from the fp32 reference's.

The budget is the largest deviation from its fp32 reference that a model's
owner accepts when the runtime picks a faster way to run it (OpenVINO's bf16
inference precision, an int8 or fp16 variant, a TensorRT fp16/int8 engine).
It lives in `<repo>/<name>/budget.json` beside config.pbtxt, so it can be set
at export and changed later without re-exporting; a model without the file
has its kind's defaults. The file holds only the limits the owner set, so a
model keeps following the defaults for the others.

Limits per kind (metrics are measured on the same inputs through both):

- stylizer: mean PSNR (dB) of the outputs against fp32's, and the largest
  per-pixel difference in uint8 levels;
- classifier: share of inputs whose top-1 class is unchanged, and the largest
  change of any class probability;
- generator: mean absolute pixel difference in uint8 levels.

Plain Python (numpy is imported by the measuring functions only, so the
CLI's parser can show the defaults cheaply): export/ writes budgets,
runtime/ reads them and measures, the CLI sets and shows them.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from artforge import contract
from artforge.errors import InvalidInputError
from artforge.files import write_bytes_atomic

if TYPE_CHECKING:
    import numpy as np

#: the budget's file in a model's folder (<repo>/<name>/), shared by every version
BUDGET_FILE = "budget.json"
BUDGET_FORMAT = 1
#: stands for "identical" where PSNR would be infinite
PSNR_IDENTICAL = 99.0


@dataclass(frozen=True)
class Budget:
    """The largest deviation from fp32 a model accepts; each limit applies to one kind."""

    min_psnr: float = 40.0  # stylizer: mean PSNR (dB) of outputs against fp32's
    max_level_diff: int = 12  # stylizer: largest per-pixel difference, uint8 levels
    min_top1_agreement: float = 1.0  # classifier: share of inputs whose top-1 class is unchanged
    max_prob_diff: float = 0.1  # classifier: largest change of any class probability
    max_mae: float = 1.0  # generator: mean absolute pixel difference, uint8 levels

    def __post_init__(self) -> None:
        for key in ("min_top1_agreement", "max_prob_diff"):
            value = getattr(self, key)
            if isinstance(value, bool) or not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
                raise InvalidInputError(f"budget {key} must be a number from 0 to 1, got {value!r}")
        for key in ("min_psnr", "max_mae"):
            value = getattr(self, key)
            if isinstance(value, bool) or not (isinstance(value, (int, float)) and math.isfinite(value)
                                               and value >= 0):
                raise InvalidInputError(f"budget {key} must be a non-negative number, got {value!r}")
        value = self.max_level_diff
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 255:
            raise InvalidInputError(f"budget max_level_diff must be a whole number from 0 to 255, got {value!r}")

    def for_kind(self, kind: str) -> dict[str, float]:
        """The limits that apply to a model of `kind`, by key."""
        return {key: getattr(self, key) for key in KIND_LIMITS[kind]}


#: which budget limits apply to each kind
KIND_LIMITS: dict[str, tuple[str, ...]] = {
    contract.STYLIZER: ("min_psnr", "max_level_diff"),
    contract.CLASSIFIER: ("min_top1_agreement", "max_prob_diff"),
    contract.GENERATOR: ("max_mae",),
}
#: budget key -> (the metric it limits, ">=" or "<=", words for messages)
_CHECKS: dict[str, tuple[str, str, str]] = {
    "min_psnr": ("psnr_db", ">=", "mean PSNR (dB)"),
    "max_level_diff": ("max_level_diff", "<=", "largest pixel difference (levels)"),
    "min_top1_agreement": ("top1_agreement", ">=", "top-1 agreement"),
    "max_prob_diff": ("max_prob_diff", "<=", "largest probability difference"),
    "max_mae": ("mae_levels", "<=", "mean absolute difference (levels)"),
}
BUDGET_KEYS = tuple(f.name for f in fields(Budget))


def budget_path(model_dir: Path) -> Path:
    return Path(model_dir) / BUDGET_FILE


def read_overrides(model_dir: Path) -> dict[str, Any]:
    """The limits the owner set in <model_dir>/budget.json ({} without the file).

    An unreadable or malformed file is an error naming it: silently falling
    back to the defaults could serve a precision the owner had ruled out.
    """
    file = budget_path(model_dir)
    if not file.is_file():
        return {}
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InvalidInputError(f"{file} is not a readable budget ({error}); fix it or remove it "
                                "(`artforge budget MODEL --reset`)") from None
    limits = data.get("limits") if isinstance(data, dict) else None
    if not isinstance(limits, dict) or any(key not in BUDGET_KEYS for key in limits):
        raise InvalidInputError(f"{file}: expected {{\"limits\": {{...}}}} with keys among {', '.join(BUDGET_KEYS)}")
    return dict(limits)


def read_budget(model_dir: Path) -> Budget:
    """The budget in effect for the model in model_dir: the defaults, then what budget.json sets."""
    overrides = read_overrides(model_dir)
    try:
        return replace(Budget(), **overrides)
    except InvalidInputError as error:
        raise InvalidInputError(f"{budget_path(model_dir)}: {error}") from None


def write_budget(model_dir: Path, overrides: dict[str, Any]) -> Path:
    """Write the limits the owner sets (checked; {} removes the file: back to the defaults)."""
    unknown = [key for key in overrides if key not in BUDGET_KEYS]
    if unknown:
        raise InvalidInputError(f"unknown budget limit(s) {', '.join(unknown)}; use {', '.join(BUDGET_KEYS)}")
    replace(Budget(), **overrides)  # validates the values
    file = budget_path(model_dir)
    if not overrides:
        file.unlink(missing_ok=True)
        return file
    text = json.dumps({"format": BUDGET_FORMAT, "limits": dict(sorted(overrides.items()))}, indent=2) + "\n"
    write_bytes_atomic(file, text.encode())
    return file


def parse_budget(text: str | None) -> dict[str, Any]:
    """`min-psnr=35,max-level-diff=8` (dashes or underscores) -> {"min_psnr": 35.0, "max_level_diff": 8}."""
    overrides: dict[str, Any] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in BUDGET_KEYS:
            raise InvalidInputError(f"--budget {item.strip()!r} is not KEY=VALUE with KEY one of "
                                    f"{', '.join(k.replace('_', '-') for k in BUDGET_KEYS)}")
        try:
            overrides[key] = int(raw) if key == "max_level_diff" else float(raw)
        except ValueError:
            raise InvalidInputError(f"--budget {key.replace('_', '-')} must be a number, got {raw.strip()!r}") from None
    replace(Budget(), **overrides)  # validates the values
    return overrides


# ------------------------------------------------------------------ measuring
def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images (PSNR_IDENTICAL when they are equal)."""
    import numpy as np

    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return PSNR_IDENTICAL if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def deviation(kind: str, reference: np.ndarray, got: np.ndarray) -> dict[str, Any]:
    """How far `got` is from `reference`: the contract outputs of one model kind for the same inputs."""
    import numpy as np

    if got.shape != reference.shape or got.dtype != reference.dtype:
        raise InvalidInputError(f"outputs of {got.dtype} {list(got.shape)} cannot be compared with the "
                                f"reference's {reference.dtype} {list(reference.shape)}")
    if kind == contract.CLASSIFIER:
        diff = np.nan_to_num(np.abs(reference.astype(np.float64) - got.astype(np.float64)), nan=1.0)
        return {"inputs": len(reference), "top1_agreement": float((reference.argmax(1) == got.argmax(1)).mean()),
                "max_prob_diff": float(diff.max(initial=0.0)), "mean_prob_diff": float(diff.mean())}
    levels = np.abs(reference.astype(np.int16) - got.astype(np.int16))
    if kind == contract.STYLIZER:
        per_image = [psnr(a, b) for a, b in zip(reference, got, strict=True)]
        return {"inputs": len(reference), "psnr_db": float(np.mean(per_image)), "min_psnr_db": float(min(per_image)),
                "max_level_diff": int(levels.max(initial=0)), "mean_level_diff": float(levels.mean())}
    return {"inputs": len(reference), "mae_levels": float(levels.mean()), "max_levels": int(levels.max(initial=0)),
            "psnr_db": psnr(reference, got)}


def judge(kind: str, metrics: dict[str, Any], budget: Budget) -> list[str]:
    """Sentences naming each limit of the budget that the metrics miss (empty: within budget)."""
    failures = []
    for key, limit in budget.for_kind(kind).items():
        metric, sense, words = _CHECKS[key]
        value = metrics.get(metric)
        ok = value is not None and (value >= limit if sense == ">=" else value <= limit)
        if not ok:
            shown = "missing" if value is None else f"{value:.4g}"
            failures.append(f"{words} {shown} is not {sense} {limit:g}")
    return failures


def summary(kind: str, metrics: dict[str, Any]) -> str:
    """The budgeted metrics in a few words, e.g. "PSNR 52.3 dB, max 2 levels"."""
    if kind == contract.STYLIZER:
        levels = metrics["max_level_diff"]
        return f"PSNR {metrics['psnr_db']:.1f} dB, max {levels} level{'' if levels == 1 else 's'}"
    if kind == contract.CLASSIFIER:
        return f"top-1 agreement {metrics['top1_agreement']:.0%}, max prob diff {metrics['max_prob_diff']:.3g}"
    return f"MAE {metrics['mae_levels']:.2f} levels"


def describe_budget(kind: str, budget: Budget) -> str:
    """The limits of one kind in a few words, e.g. "PSNR >= 40 dB, max <= 12 levels"."""
    limits = budget.for_kind(kind)
    if kind == contract.STYLIZER:
        return f"PSNR >= {limits['min_psnr']:g} dB, max <= {limits['max_level_diff']} levels"
    if kind == contract.CLASSIFIER:
        return (f"top-1 agreement >= {limits['min_top1_agreement']:.0%}, "
                f"max prob diff <= {limits['max_prob_diff']:g}")
    return f"MAE <= {limits['max_mae']:g} levels"


def as_dict(budget: Budget, kind: str | None = None) -> dict[str, Any]:
    """The budget's limits (only those of `kind` when given), for JSON."""
    return budget.for_kind(kind) if kind else asdict(budget)
