"""Probability calibration of a classifier: temperature scaling and its measure.

A fine-tuned network's top probability is rarely the chance that it is right
(label smoothing and early stopping leave it under- or over-confident).
Temperature scaling (Guo et al., 2017) divides the logits by one scalar T,
fitted on held-in validation data to minimise the negative log-likelihood; it
never changes which class wins, only how sure the model says it is. The
expected calibration error (ECE) measures the gap: the mean, over confidence
bins weighted by their share of samples, of |accuracy - mean confidence|.

numpy and scipy only, so the zoo's evaluation of an exported model uses the
same measure as training.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

#: equal-width confidence bins of the ECE (Guo et al. use 15)
ECE_BINS = 15
#: temperatures searched; outside this a model is broken, not miscalibrated
TEMPERATURE_RANGE = (0.05, 20.0)


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE of [N, K] probabilities against integer labels [N], in 0..1."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels)
    if probabilities.ndim != 2 or len(probabilities) != len(labels):
        raise ValueError(f"need [N, K] probabilities and N labels; got {probabilities.shape} and {labels.shape}")
    if len(labels) == 0:
        raise ValueError("no samples to measure calibration on")
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    # Bin i holds confidences in (edges[i], edges[i+1]]; a confidence of exactly 0 joins the first bin.
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    error = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            error += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(error)


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean NLL of softmax(logits / temperature) at the true labels."""
    log_p = log_softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=1)
    return float(-log_p[np.arange(len(labels)), labels].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T minimising the validation NLL of softmax(logits / T).

    The NLL is convex in 1/T, so a bounded scalar search finds the optimum.
    """
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels)
    if logits.ndim != 2 or len(logits) != len(labels) or len(labels) == 0:
        raise ValueError(f"need [N, K] logits and N labels (N > 0); got {logits.shape} and {labels.shape}")
    low, high = TEMPERATURE_RANGE
    result = minimize_scalar(lambda inverse: negative_log_likelihood(logits, labels, 1.0 / inverse),
                             bounds=(1.0 / high, 1.0 / low), method="bounded", options={"xatol": 1e-5})
    return float(1.0 / result.x)


def untempered(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """The probabilities before a temperature T was applied: softmax(z) is proportional to softmax(z/T)**T.

    Lets the evaluation of an exported (calibrated) model report the ECE the
    network had before calibration, from the same outputs.
    """
    log_p = np.log(np.clip(np.asarray(probabilities, dtype=np.float64), 1e-300, None)) * temperature
    log_p -= log_p.max(axis=1, keepdims=True)
    p = np.exp(log_p)
    return p / p.sum(axis=1, keepdims=True)
