"""Neural style transfer (D2L §13.12): the image itself is the parameter, trained so that a frozen
network sees in it the content of one image and the style of another.

A network's activations at a deep layer describe what is where (content); the correlations between
its channels at several layers, summed over positions, describe textures and colours regardless of
where they are (style). With features Y (C, H, W) of one image, flattened to (C, HW):

* content loss: mean((Y_hat - Y)^2) at the content layer;
* style loss: mean((G(Y_hat) - G(Y))^2) at each style layer, with the Gram matrix
  G(Y) = Y Y^T / (C H W), (C, C);
* total variation loss: (mean |Y[i+1, j] - Y[i, j]| + mean |Y[i, j+1] - Y[i, j]|) / 2 of the image,
  which keeps neighbouring pixels alike (against high-frequency noise).

:func:`gram` works per image of a batch, (B, C, H, W) -> (B, C, C); the book's ``X.reshape((C, n))``
of a batch of B > 1 images would mix pixels of several channels and images in each row (it only ever
takes one image, where the two agree). The extractor (:class:`FeatureExtractor`) is frozen
and in evaluation mode; the book leaves VGG's parameters trainable.

Letters: B images, C channels, H x W a feature map's size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

STYLE_LAYERS = (0, 5, 10, 19, 28)  # VGG-19's first convolution of each block (torchvision's numbering)
CONTENT_LAYERS = (25,)  # the last convolution of the fourth block


def gram(Y: torch.Tensor) -> torch.Tensor:
    """Gram matrices of feature maps, per image: (B, C, H, W) -> (B, C, C), Y Y^T / (C H W)."""
    B, C, H, W = Y.shape
    flat = Y.reshape(B, C, H * W)  # (B, C, HW)
    return flat @ flat.transpose(1, 2) / (C * H * W)  # (B, C, C)


def content_loss(Y_hat: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of the features; the target is a fixed value (detached)."""
    return torch.square(Y_hat - Y.detach()).mean()


def style_loss(Y_hat: torch.Tensor, gram_Y: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of the Gram matrices of ``Y_hat`` and the style's (given, detached)."""
    return torch.square(gram(Y_hat) - gram_Y.detach()).mean()


def tv_loss(Y_hat: torch.Tensor) -> torch.Tensor:
    """Total variation of images (B, C, H, W): half the mean absolute difference of vertical
    neighbours plus half that of horizontal ones."""
    return 0.5 * ((Y_hat[:, :, 1:, :] - Y_hat[:, :, :-1, :]).abs().mean()
                  + (Y_hat[:, :, :, 1:] - Y_hat[:, :, :, :-1]).abs().mean())


class FeatureExtractor(nn.Module):
    """The layers of a frozen network up to the deepest one asked for, returning in one pass the
    features of the content layers and of the style layers, as the book's code records them: its
    loop runs the network up to the deepest layer, and torchvision's ReLUs work in place, so the
    output of a convolution it keeps is overwritten with that of the ReLU after it, when the loop
    runs that ReLU (for every layer but the deepest). Here the features are the ReLUs' outputs
    then, without in-place tricks."""

    def __init__(self, features: nn.Sequential, content_layers: Sequence[int] = CONTENT_LAYERS,
                 style_layers: Sequence[int] = STYLE_LAYERS):
        super().__init__()
        if not (*content_layers, *style_layers):
            raise ValueError("name at least one content or style layer (indices into the network's layers)")
        deepest = max((*content_layers, *style_layers))
        if deepest >= len(features):
            raise ValueError(f"layer {deepest} was asked for, but the network has only {len(features)} layers")
        self.layers = nn.ModuleList(list(features)[:deepest + 1])
        self.content_at = [self._after_relu(i) for i in content_layers]
        self.style_at = [self._after_relu(i) for i in style_layers]
        self.requires_grad_(False)
        self.eval()

    def _after_relu(self, i: int) -> int:
        following = self.layers[i + 1] if i + 1 < len(self.layers) else None
        return i + 1 if following is not None and "ReLU" in type(following).__name__ else i

    def train(self, mode: bool = True):
        return super().train(False)  # always in evaluation mode

    def forward(self, X: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        outputs = {}
        for i, layer in enumerate(self.layers):
            X = layer(X)
            outputs[i] = X
        return [outputs[i] for i in self.content_at], [outputs[i] for i in self.style_at]


class SynthesizedImage(nn.Module):
    """The image being made, as the one parameter ``weight`` (1, 3, H, W), started from ``init``
    (the book starts from the content image)."""

    def __init__(self, init: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(init.detach().clone())

    def forward(self) -> torch.Tensor:
        return self.weight
