"""artforge: art models from PyTorch training to production inference."""

__version__ = "0.1.0"
