"""The art-style classifier measured as it ships: the exported model, run by the
runtime, on the held-out photos; the result goes into its model card."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from artforge.files import write_bytes_atomic
from artforge.runtime import Repository
from artforge.training.data import image_folder


def evaluate_classifier(repo: Path, name: str, test_dir: Path) -> dict[str, Any]:
    """Accuracy of the exported model (as the runtime runs it) on held-out photos."""
    model = Repository(repo).classifier(name)
    samples, classes = image_folder(test_dir)
    index = {label: i for i, label in enumerate(model.metadata.labels)}
    confusion = np.zeros((len(index), len(index)), dtype=int)
    for start in range(0, len(samples), 32):
        chunk = samples[start:start + 32]
        predicted = model.probabilities([str(path) for path, _ in chunk]).argmax(axis=1)
        for (_, truth), guess in zip(chunk, predicted, strict=True):
            confusion[index[classes[truth]], guess] += 1
    per_class = {label: float(confusion[i, i] / max(1, confusion[i].sum())) for label, i in index.items()}
    return {"images": len(samples), "accuracy": float(np.trace(confusion) / max(1, confusion.sum())),
            "per_class_accuracy": per_class, "labels": list(model.metadata.labels),
            "confusion_matrix": confusion.tolist()}


def append_evaluation(card: Path, evaluation: dict[str, Any], held_out: list[str]) -> None:
    """Add the evaluation (accuracy per style, confusion matrix) to a model card."""
    lines = ["", "## Evaluation on held-out photos", "",
             f"{evaluation['images']} images rendered from source photos never seen in training "
             f"({', '.join(held_out)}), run through the exported ONNX model by artforge's runtime.", "",
             f"**Top-1 accuracy: {evaluation['accuracy']:.1%}**", "", "| style | accuracy |", "|---|---:|"]
    lines += [f"| {label} | {acc:.1%} |" for label, acc in evaluation["per_class_accuracy"].items()]
    lines += ["", "Confusion matrix (rows: true style, columns: predicted, in label order):", "", "```"]
    lines += [" ".join(f"{n:4d}" for n in row) for row in evaluation["confusion_matrix"]]
    lines += ["```", ""]
    write_bytes_atomic(card, (card.read_text().rstrip() + "\n" + "\n".join(lines)).encode())
