from . import metrics  # noqa: F401
from .temperature_scaling import fit_temperature, scale_scores  # noqa: F401
