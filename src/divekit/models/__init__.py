"""Models by family (``linear``, ``mlp``, ``cnn/``, ``rnn``, ``seq2seq``, ...), each built once from
the ops twin it is given and registered by name: ``create_model(name, "scratch" or "fast", **config)``
(see :mod:`divekit.models.registry`). Models know nothing about training: ``forward`` returns
tensors; tasks compute losses and metrics."""

from divekit.models.registry import create_model, get_model, list_models, model_config

__all__ = ["create_model", "get_model", "list_models", "model_config"]
