"""The perceptron (Rosenblatt 1958; D2L §4.1 in the study notes), from scratch.

A linear classifier o = <w, x> + b with labels y in {-1, +1}, trained one example at a time
(batch size 1) on the loss max(0, -y <w, x>). On a mistake, y (<w, x> + b) <= 0, the negative
gradient of that loss is y x, so SGD with learning rate 1 is the classical update
w <- w + y x, b <- b + y; a correctly classified example changes nothing.

Novikoff's theorem: if some unit vector (w*, b*) separates the data with margin gamma, i.e.
y (<w*, x> + b*) >= gamma for every example, and every augmented example [x, 1] has norm at most R,
the algorithm makes at most (R / gamma)^2 mistakes in total. Data that no line separates, such as
XOR, is never fitted: some example is misclassified in every epoch (Minsky & Papert 1969).
Shapes: X (N, D), y (N,), w (D,), b scalar.
"""

from __future__ import annotations

import torch
from torch import nn


class Perceptron(nn.Module):
    """Scores o = X w + b; the predicted label is +1 where o > 0, else -1. Starts at w = 0, b = 0."""

    def __init__(self, num_inputs: int):
        super().__init__()
        # trained by the perceptron rule below, not by autograd
        self.weight = nn.Parameter(torch.zeros(num_inputs), requires_grad=False)
        self.bias = nn.Parameter(torch.zeros(()), requires_grad=False)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return X.reshape(X.shape[0], -1) @ self.weight + self.bias  # (N,)

    def predict(self, X: torch.Tensor) -> torch.Tensor:
        return torch.where(self(X) > 0, 1, -1)


def check_labels(y: torch.Tensor) -> None:
    if not bool(((y == 1) | (y == -1)).all()):
        raise ValueError(f"perceptron labels must be -1 or +1, got values {sorted(set(y.tolist()))[:5]}; "
                         "map class 0 to -1 first (e.g. y = 2 * y - 1)")


@torch.no_grad()
def train_perceptron(model: Perceptron, X: torch.Tensor, y: torch.Tensor, max_epochs: int = 100) -> list[int]:
    """Run the perceptron rule over (X, y) in order until an epoch without mistakes or ``max_epochs``;
    returns the number of mistakes (updates) in each epoch."""
    check_labels(y)
    X = X.reshape(X.shape[0], -1).to(model.weight.dtype)
    mistakes_per_epoch = []
    for _ in range(max_epochs):
        mistakes = 0
        for x_i, y_i in zip(X, y):
            # a mistake: y <w, x> <= 0 (a point on the boundary counts, so that w = 0 can start moving)
            if y_i * (x_i @ model.weight + model.bias) <= 0:
                model.weight += y_i * x_i  # w <- w + y x
                model.bias += y_i  # b <- b + y
                mistakes += 1
        mistakes_per_epoch.append(mistakes)
        if mistakes == 0:
            break
    return mistakes_per_epoch


def mistake_bound(X: torch.Tensor, y: torch.Tensor, w_star: torch.Tensor, b_star: float) -> float:
    """Novikoff's bound (R / gamma)^2 on the total number of mistakes, for a separator (w*, b*)."""
    check_labels(y)
    X_aug = torch.cat([X.reshape(X.shape[0], -1), torch.ones(X.shape[0], 1, dtype=X.dtype)], dim=1)  # [x, 1]
    u = torch.cat([w_star.reshape(-1).to(X.dtype), torch.tensor([b_star], dtype=X.dtype)])
    u = u / u.norm()  # a unit separator
    gamma = float((y * (X_aug @ u)).min())
    if gamma <= 0:
        raise ValueError(f"(w*, b*) does not separate the data (smallest margin {gamma:.3g}); the bound needs a separator")
    R = float(X_aug.norm(dim=1).max())
    return (R / gamma) ** 2
