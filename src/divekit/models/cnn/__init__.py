"""Convolutional networks of D2L chapters 6-7, one file per family, each built once from the ops
twin it is given (``ops.scratch`` or ``ops.fast``) and registered by name in
:mod:`divekit.models.registry` (``create_model("lenet", "scratch", input_shape=(3, 32, 32))``).

Every config is sized by ``input_shape`` (C, H, W) and ``num_classes``, so the same network runs on
the book's Fashion-MNIST or on a user's image folder (3 channels, any number of classes).
"""

from divekit.models.cnn.base import ConvNet, ImageClassifierConfig, flat_size, layer_shapes

__all__ = ["ConvNet", "ImageClassifierConfig", "flat_size", "layer_shapes"]
