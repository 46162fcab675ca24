"""Configuration: ``MLOPS_*`` settings and the Prefect Block types."""

from blocks.registry import RegistryBlock
from blocks.settings import MlopsSettings, get_settings

__all__ = ["MlopsSettings", "RegistryBlock", "get_settings"]
