"""Measures of model quality. Training, the zoo build and benchmarks use them;
runtime/, batch/ and serving/ do not.

- style_metrics.py  how much of a style image a stylized photo took on
                    (colours, texture) and how much of the photo it kept;
                    no neural network (numpy, OpenCV, scikit-image), so a style
                    network is never judged by the network it was trained through
- gan_metrics.py    how close a generator's images are to held-out real ones and
                    how varied they are: Fréchet distance, precision/recall and
                    near-duplicate rate in ImageNet EfficientNet-Lite0 features
                    (needs torch)
"""
