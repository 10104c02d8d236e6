"""The zoo's models measured as they ship: the exported model, run by the
runtime, on held-out data; the result goes into its model card.

- the art-style classifier: accuracy per class, confusion matrix and
  calibration (ECE) on held-out photos;
- the style networks: network-free style metrics (artforge.quality.style_metrics)
  of the held-out photos they stylize, against their style image and the photos;
- the DCGAN: Fréchet distance, precision/recall and near-duplicates against
  held-out tiles (artforge.quality.gan_metrics).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from artforge.files import write_bytes_atomic
from artforge.quality.style_metrics import StyleReference, mean_scores
from artforge.runtime import Repository, read_image
from artforge.training.calibration import expected_calibration_error, untempered
from artforge.training.data import image_folder, list_images, read_rgb

#: the seed of the latents the generator is measured with
GENERATOR_EVAL_SEED = 2024
#: smallest style image side the Gabor texture measure works at (its largest kernel is 55 px)
MIN_STYLE_EVAL_SIZE = 64

#: side of the centre square of each photo a style network is evaluated on
STYLE_EVAL_SIDE = 256


def evaluate_classifier(repo: Path, name: str, test_dir: Path) -> dict[str, Any]:
    """Accuracy of the exported model (as the runtime runs it) on held-out photos."""
    model = Repository(repo).classifier(name)
    samples, classes = image_folder(test_dir)
    index = {label: i for i, label in enumerate(model.metadata.labels)}
    unknown = sorted(set(classes) - set(index))
    if unknown:
        raise ValueError(f"{test_dir} has class folder(s) {', '.join(unknown)} that {name} does not know")
    confusion = np.zeros((len(index), len(index)), dtype=int)
    probabilities, truths = [], []
    for start in range(0, len(samples), 32):
        chunk = samples[start:start + 32]
        probabilities.append(model.probabilities([str(path) for path, _ in chunk]))
        truths += [index[classes[truth]] for _, truth in chunk]
    p, labels = np.concatenate(probabilities), np.array(truths)
    np.add.at(confusion, (labels, p.argmax(axis=1)), 1)
    per_class = {label: float(confusion[i, i] / max(1, confusion[i].sum())) for label, i in index.items()}
    result = {"images": len(samples), "accuracy": float(np.trace(confusion) / max(1, confusion.sum())),
              "per_class_accuracy": per_class, "labels": list(model.metadata.labels),
              "confusion_matrix": confusion.tolist(), "ece": expected_calibration_error(p, labels),
              "mean_top_probability": float(p.max(axis=1).mean())}
    # The exported network has its temperature folded in; its outputs before calibration are recoverable.
    temperature = ((model.metadata.provenance or {}).get("calibration") or {}).get("temperature")
    if temperature:
        result["temperature"] = float(temperature)
        result["ece_uncalibrated"] = expected_calibration_error(untempered(p, float(temperature)), labels)
    return result


def append_evaluation(card: Path, evaluation: dict[str, Any], held_out: list[str]) -> None:
    """Add the evaluation (accuracy per style, confusion matrix) to a model card."""
    lines = ["", "## Evaluation on held-out photos", "",
             f"{evaluation['images']} images rendered from source photos never seen in training "
             f"({', '.join(held_out)}), run through the exported ONNX model by artforge's runtime.", "",
             f"**Top-1 accuracy: {evaluation['accuracy']:.1%}**", ""]
    if "ece" in evaluation:
        calibrated = (f" (temperature {evaluation['temperature']:.2f} fitted on the validation split; "
                      f"{evaluation['ece_uncalibrated']:.1%} before it)" if "temperature" in evaluation else "")
        lines += [f"Expected calibration error (15 bins): **{evaluation['ece']:.1%}**{calibrated}; mean top "
                  f"probability {evaluation['mean_top_probability']:.2f}.", ""]
    lines += ["| class | accuracy |", "|---|---:|"]
    lines += [f"| {label} | {acc:.1%} |" for label, acc in evaluation["per_class_accuracy"].items()]
    lines += ["", "Confusion matrix (rows: true style, columns: predicted, in label order):", "", "```"]
    lines += [" ".join(f"{n:4d}" for n in row) for row in evaluation["confusion_matrix"]]
    lines += ["```", ""]
    write_bytes_atomic(card, (card.read_text().rstrip() + "\n" + "\n".join(lines)).encode())


def evaluation_samples(model: Any, count: int, seed: int = GENERATOR_EVAL_SEED) -> np.ndarray:
    """`count` uint8 images of a runtime generator, on the evaluation latents (seeded GENERATOR_EVAL_SEED,
    drawn 64 at a time): the same images wherever a generator is measured. Another `seed` is another draw
    (how much one FD moves with the latents)."""
    return np.concatenate([np.stack(model.generate(min(64, count - start), seed=seed + start))
                           for start in range(0, count, 64)])


def evaluate_generator(repo: Path, name: str, test_dir: Path, count: int = 1000,
                       train_dir: Path | None = None) -> dict[str, Any]:
    """FD, precision/recall and near-duplicate rate of `count` images of the exported generator
    (as the runtime runs it) against up to `count` held-out real images.

    With `train_dir`, as many of the training images are scored the same way
    (`training_images`): the figures a generator that reproduced its training
    set would get, without which an FD has no scale.
    """
    from artforge.quality.gan_metrics import FeatureExtractor, RealReference  # torch: only now
    real = np.stack([read_rgb(path) for path in list_images(test_dir)[:count]])
    fake = evaluation_samples(Repository(repo).generator(name), count)
    reference = RealReference(FeatureExtractor(), real)
    scores = {**reference.score(fake), "seed": GENERATOR_EVAL_SEED}
    if train_dir is not None:
        trained_on = np.stack([read_rgb(path) for path in list_images(train_dir)[:count]])
        scores["training_images"] = reference.score(trained_on)
    return scores


def append_generator_evaluation(card: Path, scores: dict[str, Any]) -> None:
    """Add the held-out measurements to a generator's model card."""
    lines = ["", "## Evaluation on held-out tiles", "",
             f"{scores['generated']} images of the exported ONNX model (run by artforge's runtime, latents seeded "
             f"{scores['seed']}) against {scores['real']} held-out tiles cut from paintings and photos never seen in "
             "training, in the pooled features of ImageNet EfficientNet-Lite0 (artforge/quality/gan_metrics.py; "
             "docs/dcgan.md explains the measures).", "",
             "| images | Fréchet distance | precision | recall | near-duplicate pairs |", "|---|---:|---:|---:|---:|",
             _generator_row("generated by this model", scores)]
    if "training_images" in scores:
        real = scores["training_images"]
        lines.append(_generator_row(f"{real['generated']} of its training tiles (real; for scale)", real))
    lines += ["", "Near-duplicate pairs: real tiles score 1 % by construction; mode collapse scores far more. "
              "The training tiles' row is what a generator that reproduced its training set would score.", ""]
    write_bytes_atomic(card, (card.read_text().rstrip() + "\n" + "\n".join(lines)).encode())


def _generator_row(what: str, scores: dict[str, Any]) -> str:
    return (f"| {what} | {scores['fd']:.1f} | {scores['precision']:.1%} | {scores['recall']:.1%} "
            f"| {scores['duplicates']:.2%} |")


def centre_square(image: np.ndarray, side: int = STYLE_EVAL_SIDE) -> np.ndarray:
    h, w = image.shape[:2]
    s = min(h, w)
    crop = image[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    return cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA if s > side else cv2.INTER_CUBIC)


def style_reference(style_path: Path, style_size: int) -> StyleReference:
    """The style image as training saw it (shorter side style_size), measured once."""
    style = read_image(style_path)[..., :3]
    h, w = style.shape[:2]
    scale = style_size / min(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return StyleReference(cv2.resize(style, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC))


def evaluate_stylizer(repo: Path, name: str, style_path: Path, photos: dict[str, np.ndarray]) -> dict[str, Any]:
    """Style metrics of the exported style network (as the runtime runs it) on photos it did not train on:
    colour (sliced Wasserstein in Lab) and texture (Gabor Gram distance) against its style image at the
    size it was trained with, edges (edge-map SSIM) against each photo; with the same numbers for the
    photos themselves, unstylized, as the point of comparison."""
    model = Repository(repo).stylizer(name)
    # A toy build's style size (32 px) is below what the texture filters can measure.
    style_size = max(MIN_STYLE_EVAL_SIZE, int(model.metadata.provenance.get("style_size", STYLE_EVAL_SIDE)))
    reference = style_reference(style_path, style_size)
    per_photo, unstylized = {}, {}
    for photo_name, photo in photos.items():
        square = centre_square(photo)
        per_photo[photo_name] = reference.score(model.stylize(square), square)
        unstylized[photo_name] = reference.score(square, square)
    return {"photos": list(photos), "style_size": style_size, "side": STYLE_EVAL_SIDE,
            "mean": mean_scores(per_photo.values()).as_dict(),
            "per_photo": {k: v.as_dict() for k, v in per_photo.items()},
            "unstylized": mean_scores(unstylized.values()).as_dict()}


def append_style_evaluation(card: Path, evaluation: dict[str, Any]) -> None:
    """Add the style metrics to a style network's model card."""
    mean, plain = evaluation["mean"], evaluation["unstylized"]
    lines = ["", "## Style quality on held-out photos", "",
             f"Centre {evaluation['side']} px squares of {', '.join(evaluation['photos'])}, stylized by the "
             "exported ONNX model through artforge's runtime, measured by network-free metrics "
             "(artforge/quality/style_metrics.py): colour is the sliced Wasserstein distance to the style "
             f"image's colours in Lab units, texture the Gabor filter-bank Gram distance to the style image "
             f"(at {evaluation['style_size']} px, the size it was trained with), both lower is closer; edges "
             "is the SSIM of the edge maps to the photo (1 keeps every edge).", "",
             "| | colour ↓ | texture ↓ | edges ↑ |", "|---|---:|---:|---:|",
             f"| stylized (mean) | {mean['colour']:.2f} | {mean['texture']:.3f} | {mean['edges']:.3f} |",
             f"| the photos themselves | {plain['colour']:.2f} | {plain['texture']:.3f} | {plain['edges']:.3f} |"]
    lines += [f"| {photo} | {s['colour']:.2f} | {s['texture']:.3f} | {s['edges']:.3f} |"
              for photo, s in evaluation["per_photo"].items()]
    write_bytes_atomic(card, (card.read_text().rstrip() + "\n" + "\n".join(lines) + "\n").encode())
