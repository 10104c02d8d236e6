"""Image-quality measures that depend on no neural network (numpy, OpenCV and
scikit-image only), so that a model is never judged by the network it was
trained through. Training, the zoo build and benchmarks use them; runtime/,
batch/ and serving/ do not.

- style_metrics.py  how much of a style image a stylized photo took on
                    (colours, texture) and how much of the photo it kept
"""
