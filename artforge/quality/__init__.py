"""Measures of model quality. Training, the zoo build and benchmarks use them;
runtime/, batch/ and serving/ do not (they need torch).

- gan_metrics.py  how close a generator's images are to held-out real ones and
                  how varied they are: Fréchet distance, precision/recall and
                  near-duplicate rate in ImageNet EfficientNet-Lite0 features
"""
