"""Style transfer's pieces (D2L §13.12): the Gram matrix per image against the book's formula, the
content and total-variation losses against brute force, the frozen extractor that takes a feature
after its ReLU, VGG-19's flat numbering with torchvision's keys, and the image as the parameter."""

import pytest
import torch
from torch import nn

from divekit.models.registry import create_model
from divekit.models.style import (CONTENT_LAYERS, STYLE_LAYERS, FeatureExtractor, SynthesizedImage, content_loss, gram,
                                  style_loss, tv_loss)


def book_gram(X):
    """D2L §13.12.5 verbatim (for one image): (C, n) X X^T / (C n)."""
    num_channels, n = X.shape[1], X.numel() // X.shape[1]
    X = X.reshape((num_channels, n))
    return X @ X.T / (num_channels * n)


def test_gram_is_the_books_for_one_image_and_does_not_mix_images():
    X = torch.randn(3, 4, 5, 6, dtype=torch.float64)
    G = gram(X)
    assert G.shape == (3, 4, 4)
    for b in range(3):
        torch.testing.assert_close(G[b], book_gram(X[b:b + 1]))
    assert not torch.allclose(book_gram(X), G.mean(0))  # the book's reshape of a batch mixes the images
    torch.testing.assert_close(style_loss(X, G), torch.tensor(0.0, dtype=torch.float64))


def test_content_and_total_variation_losses_by_brute_force():
    Y_hat, Y = torch.randn(1, 2, 3, 4, requires_grad=True), torch.randn(1, 2, 3, 4)
    torch.testing.assert_close(content_loss(Y_hat, Y), ((Y_hat - Y) ** 2).sum() / Y.numel())
    X = torch.randn(1, 3, 4, 5)
    down = sum(abs(float(X[0, c, i + 1, j] - X[0, c, i, j])) for c in range(3) for i in range(3) for j in range(5)) / 45
    right = sum(abs(float(X[0, c, i, j + 1] - X[0, c, i, j]))
                for c in range(3) for i in range(4) for j in range(4)) / 48
    assert float(tv_loss(X)) == pytest.approx(0.5 * (down + right), rel=1e-6)
    assert float(tv_loss(torch.ones(1, 3, 4, 5))) == 0
    target = torch.randn(1, 2, 3, 4, requires_grad=True)
    content_loss(Y_hat, target).backward()
    assert target.grad is None  # the target is a fixed value


def torchvision_vgg19_features():
    """torchvision.models.vgg19().features' modules, in its order (cfg 'E')."""
    layers, channels = [], 3
    for v in (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"):
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, v, 3, padding=1), nn.ReLU(inplace=True)]
            channels = v
    return nn.Sequential(*layers)


def test_vgg19_is_numbered_as_torchvisions_and_its_weights_load():
    reference = torchvision_vgg19_features().eval()
    ours = create_model("vgg19", "fast", input_shape=(3, 32, 32), num_classes=10, hidden=8)
    assert list(ours.features.state_dict()) == list(reference.state_dict())
    ours.features.load_state_dict(reference.state_dict())
    X = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours.features(X), reference(X))
    kinds = [type(layer).__name__ for layer in ours.features]
    assert [kinds[i] for i in STYLE_LAYERS + CONTENT_LAYERS] == ["Conv2d"] * 6


def test_the_extractor_is_frozen_and_reads_features_after_their_relu_as_the_books_code_does():
    reference = torchvision_vgg19_features().eval()
    extractor = FeatureExtractor(reference)
    assert not any(p.requires_grad for p in extractor.parameters()) and not extractor.training
    extractor.train()
    assert not extractor.training  # stays in evaluation mode
    X = torch.rand(1, 3, 32, 32)
    contents, styles = extractor(X)
    # the book's extract_features on torchvision's VGG: the conv outputs it keeps are overwritten by the
    # in-place ReLU that follows
    book_contents, book_styles, Y = [], [], X
    with torch.no_grad():
        for i in range(max(CONTENT_LAYERS + STYLE_LAYERS) + 1):
            Y = reference[i](Y)
            if i in STYLE_LAYERS:
                book_styles.append(Y)
            if i in CONTENT_LAYERS:
                book_contents.append(Y)
    for ours, book in zip(contents + styles, book_contents + book_styles):
        torch.testing.assert_close(ours, book)
    assert all(feature.min() >= 0 for feature in contents + styles[:-1])  # after a ReLU
    assert styles[-1].min() < 0  # the deepest layer's ReLU never runs in the book's loop
    with pytest.raises(ValueError, match="only 5 layers"):
        FeatureExtractor(reference[:5], content_layers=(5,))
    only_content = FeatureExtractor(reference, content_layers=(2,), style_layers=())  # one layer: max of one
    assert len(only_content.layers) == 3 and only_content.content_at == [2] and only_content.style_at == []
    with pytest.raises(ValueError, match="at least one content or style layer"):
        FeatureExtractor(reference, content_layers=(), style_layers=())


def test_the_synthesized_image_is_the_parameter_that_moves():
    content = torch.rand(1, 3, 8, 8)
    image = SynthesizedImage(content)
    assert [name for name, _ in image.named_parameters()] == ["weight"] and torch.equal(image(), content)
    optimizer = torch.optim.Adam(image.parameters(), lr=0.1)
    loss = tv_loss(image())
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        assert not torch.equal(image(), content) and float(tv_loss(image())) < float(loss)
