"""Data sets and loaders: the data hub (download, checksum, cache), Fashion-MNIST, synthetic
data, the user's own folders and tables, and a device-side batch loader."""

from divekit.data.base import Split, SplitData
from divekit.data.loader import TensorLoader

__all__ = ["Split", "SplitData", "TensorLoader"]
