"""Linear neural networks (D2L chapter 3): linear regression on synthetic data and softmax
regression on Fashion-MNIST, each from scratch (``--impl scratch``) and concise (``--impl fast``)."""

from __future__ import annotations

from divekit.experiments.parts import (Classify, FashionMNIST, ParameterErrors, PredictionGrid, Regress,
                                       SyntheticRegression)
from divekit.experiments.registry import Recipe, register

register(Recipe(
    name="linear-regression", section="3.1-3.3", title="Linear regression",
    data=SyntheticRegression(), model="linear", task=Regress(),
    train=dict(epochs=3, lr=0.03, batch_size=10),
    probes=(ParameterErrors(),), user_data_kind="regression",
    tiny=dict(num_examples=50),
))

register(Recipe(
    name="softmax-regression", section="3.4-3.7", title="Softmax regression",
    data=FashionMNIST(), model="linear", model_args=dict(zero_bias=False), task=Classify(),
    probes=(PredictionGrid(),), user_data_kind="classification",
    impl_defaults={"scratch": dict(zero_bias=True)},  # §3.6 starts b at 0; §3.7 keeps nn.Linear's
))
