"""Convolutional networks of D2L chapters 6-7, one file per family, each built once from the
``impl``'s primitives (``ops.scratch`` or ``ops.fast``).

Every model factory takes ``(input_shape=(C, H, W), num_classes, impl)``, so the same network
runs on the book's Fashion-MNIST or on a user's image folder (3 channels, any number of classes).
"""

from divekit.models.cnn.alexnet import alexnet
from divekit.models.cnn.base import ConvNet, flat_size, layer_shapes
from divekit.models.cnn.googlenet import Inception, googlenet
from divekit.models.cnn.lenet import lenet, lenet_bn
from divekit.models.cnn.nin import nin, nin_block
from divekit.models.cnn.resnet import Residual, resnet18, resnet_block
from divekit.models.cnn.vgg import VGG11, VGG11_SMALL, vgg, vgg_block

MODELS = {"lenet": lenet, "lenet-bn": lenet_bn, "alexnet": alexnet, "vgg": vgg, "nin": nin,
          "googlenet": googlenet, "resnet18": resnet18}

__all__ = ["MODELS", "VGG11", "VGG11_SMALL", "ConvNet", "Inception", "Residual", "alexnet", "flat_size", "googlenet",
           "layer_shapes", "lenet", "lenet_bn", "nin", "nin_block", "resnet18", "resnet_block", "vgg", "vgg_block"]
