"""bayes_inr: uncertainty-aware implicit neural representations for sparse-view CT."""

from .errors import InputError
from .geometry import Geometry
from .radon import RadonOperator

__version__ = "0.1.0"

__all__ = ["Geometry", "InputError", "RadonOperator", "__version__"]
