"""bayes_inr: uncertainty-aware implicit neural representations for sparse-view CT."""

from .core.errors import InputError
from .physics.geometry import Geometry
from .physics.radon import RadonOperator

__version__ = "0.1.0"

__all__ = ["Geometry", "InputError", "RadonOperator", "__version__"]
