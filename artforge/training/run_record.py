"""What a training run records about itself in the model's provenance, and
what export says when the record shows an unfinished run.

Every trainer adds run_record(...) to its provenance: the preset it started
from, every setting it ran with (so the card names each option that shaped
the network, the width of a style network included), and the steps it
planned against the steps it did. export/ reads the last part back with
shortfall() to warn about a run stopped far short of its plan (a
`--max-steps` time budget), on the console and in the model card.

Plain Python: the model card writer imports it without torch.
"""

from __future__ import annotations

from typing import Any

#: a run that stopped before this share of its planned steps is called undertrained at export
SHORTFALL = 0.5
#: settings about where and how one invocation ran, not about what was trained
NOT_RECORDED = frozenset({"out", "resume", "progress", "max_steps", "preset"})
#: how a run ended: its plan done (early stopping included), or a --max-steps budget reached first
FINISHED, MAX_STEPS = "finished", "max_steps"


def run_record(settings: dict[str, Any], steps_done: int, planned_steps: int, stopped_by: str) -> dict[str, Any]:
    """Provenance fields: preset, settings, planned_steps, steps_done, stopped_by."""
    return {
        "preset": settings.get("preset"),
        "settings": {k: v for k, v in sorted(settings.items()) if k not in NOT_RECORDED},
        "planned_steps": int(planned_steps),
        "steps_done": int(steps_done),
        "stopped_by": stopped_by,
    }


def _steps(provenance: dict[str, Any]) -> tuple[int, int] | None:
    done, planned = provenance.get("steps_done"), provenance.get("planned_steps")
    if isinstance(done, int) and isinstance(planned, int) and planned > 0:
        return done, planned
    return None


def summary(provenance: dict[str, Any]) -> str | None:
    """'trained 5 of 2000 planned steps (stopped by --max-steps)', or None for a run that recorded no plan."""
    steps = _steps(provenance)
    if steps is None:
        return None
    done, planned = steps
    how = "stopped by --max-steps" if provenance.get("stopped_by") == MAX_STEPS else "finished"
    preset = f", preset {provenance['preset']}" if provenance.get("preset") else ""
    return f"trained {done} of {planned} planned steps ({how}{preset})"


def shortfall(provenance: dict[str, Any]) -> str | None:
    """One sentence when the run stopped before SHORTFALL of its planned steps, else None."""
    steps = _steps(provenance)
    if steps is None or provenance.get("stopped_by") != MAX_STEPS:
        return None
    done, planned = steps
    if done >= SHORTFALL * planned:
        return None
    return (f"this model is undertrained: its run stopped at step {done} of the {planned} planned "
            f"({done / planned:.0%}, by --max-steps); rerun the same training command without --max-steps "
            "to finish it, then export again")
