"""kit: Kaggle image-classification recipes on fastai.

From a notebook: `import kit; kit.run("mnist", sample=True)`, and with a finished run
`kit.predict("mnist", RUN, data=...)`. The heavy imports (torch, fastai)
happen on first use, so `kit list` and `kit --help` stay quick.
"""

import importlib
import warnings

# Deprecation notices that fastai's own imports raise with current torch and pandas: not the user's.
warnings.filterwarnings(
    "ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning
)
warnings.filterwarnings("ignore", message=r"The 'mode\.chained_assignment' option is deprecated")
warnings.filterwarnings("ignore", message=r"numpy\.core is deprecated", category=DeprecationWarning)

__version__ = "0.1.0"

_EXPORTS = {
    "run": "kit.pipeline",
    "lr_find": "kit.pipeline",
    "predict": "kit.inference",
    "write_sample": "kit.data.sample",
    "Recipe": "kit.recipe",
    "override": "kit.recipe",
    "KitError": "kit.errors",
}
__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'kit' has no attribute {name!r}")
