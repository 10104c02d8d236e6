"""Temperature scaling and the expected calibration error, on synthetic logits with known miscalibration."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax

from artforge.training.calibration import (
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    untempered,
)


def _calibrated_logits(n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose softmax is the true class distribution (labels drawn from it), so T=1 is right."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 2.0, (n, k))
    p = softmax(logits, axis=1)
    labels = np.array([rng.choice(k, p=row) for row in p])
    return logits, labels


def test_ece_of_perfect_and_of_overconfident_predictions() -> None:
    labels = np.array([0, 1, 2, 0])
    assert expected_calibration_error(np.eye(3)[labels], labels) == 0.0
    # Always 100% sure and right half the time: the gap is 50 points.
    wrong = np.eye(3)[[0, 1, 0, 1]]
    assert expected_calibration_error(wrong, labels) == pytest.approx(0.5)


def test_temperature_scaling_undoes_overconfidence_and_lowers_ece() -> None:
    logits, labels = _calibrated_logits(4000, 5, seed=0)
    overconfident = logits * 3.0  # what an over-trained network looks like
    temperature = fit_temperature(overconfident, labels)
    assert temperature == pytest.approx(3.0, rel=0.15)
    before = expected_calibration_error(softmax(overconfident, axis=1), labels)
    after = expected_calibration_error(softmax(overconfident / temperature, axis=1), labels)
    assert before > 0.1 and after < 0.03 and after < before / 4
    assert negative_log_likelihood(overconfident, labels, temperature) < negative_log_likelihood(overconfident, labels)
    # Ranking is untouched: the same class wins.
    np.testing.assert_array_equal((overconfident / temperature).argmax(1), overconfident.argmax(1))


def test_underconfidence_gives_a_temperature_below_one() -> None:
    logits, labels = _calibrated_logits(4000, 4, seed=1)
    assert fit_temperature(logits / 2.5, labels) == pytest.approx(1 / 2.5, rel=0.15)


def test_untempered_recovers_the_probabilities_before_scaling() -> None:
    logits, _ = _calibrated_logits(50, 6, seed=2)
    np.testing.assert_allclose(untempered(softmax(logits / 1.7, axis=1), 1.7), softmax(logits, axis=1), atol=1e-9)


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="logits"):
        fit_temperature(np.zeros((3, 2)), np.zeros(4, int))
    with pytest.raises(ValueError, match="no samples"):
        expected_calibration_error(np.zeros((0, 2)), np.zeros(0, int))
