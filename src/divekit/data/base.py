"""The data set abstraction every loader returns (D2L §1.2, §3.2): examples as feature tensors
``X`` and labels ``y`` (a :class:`~divekit.data.batch.Split`), in a training part and an evaluation part."""

from __future__ import annotations

from dataclasses import dataclass

from divekit.data.batch import Split
from divekit.data.inputs import Inputs


@dataclass(frozen=True)
class SplitData:
    """A data set ready for training.

    ``eval_name`` says what the evaluation split is ("test" for a published test set such as
    Fashion-MNIST's, "val" for a held-out part of the training data). ``classes`` names the labels
    of a classification set and is ``None`` for regression. Image features are uint8 (N, C, H, W);
    table features are float32 (N, D). ``inputs`` (:mod:`divekit.data.inputs`) says how new raw
    inputs become such features, for predictions from a trained model.
    """

    name: str
    train: Split
    eval: Split
    eval_name: str = "val"
    classes: tuple[str, ...] | None = None
    feature_names: tuple[str, ...] | None = None
    inputs: Inputs | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.X.shape[1:])

    @property
    def num_classes(self) -> int:
        if self.classes is None:
            raise ValueError(f"{self.name} is a regression data set: it has no classes")
        return len(self.classes)
