"""The shipped zoo's recipe: the data it is trained on (synthesised from photos
that scikit-image and scikit-learn ship, or painted procedurally) and
`artforge zoo build`, which trains, exports and documents every model.

- photos.py          the source photos
- art_styles.py      photos rendered in an art style (the art-style classes)
- painting.py        painted style images for style transfer
- painting_tools.py  noise, colour shifts and strokes both of those share
- datasets.py        the image folders training reads (resumable, seeded)
- catalog.py         the zoo's models and their training settings
- build.py           build_zoo: data, training, export, evaluation, README
- evaluation.py / readme.py  what the build writes about the models

Not to be confused with the zoo/ folder at the repository root, the model
repository this package builds. Importing the package does not import torch;
training and export are imported when a model is built.
"""

from artforge.zoo.build import build_zoo
from artforge.zoo.catalog import ZOO, ZooModel

__all__ = ["ZOO", "ZooModel", "build_zoo"]
