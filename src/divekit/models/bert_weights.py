"""BERT weights from elsewhere, and to elsewhere: Hugging Face checkpoints both ways, and the book's
pretrained ``bert.small`` / ``bert.base`` (D2L §15.7).

* Hugging Face (``BertModel`` / ``BertForPreTraining`` / ``BertForMaskedLM``, whose pooler starts
  fresh): :func:`config_from_hf` and :func:`hf_config` translate the configs,
  :func:`from_hf_state_dict` and :func:`to_hf_state_dict` the weights, and :func:`load_hf_checkpoint`
  reads a checkpoint folder a user has on disk (``config.json``, the weights as
  ``model.safetensors`` or ``pytorch_model.bin``, and ``vocab.txt`` for
  :class:`~divekit.data.wordpiece.WordPieceVocab`). Hugging Face keeps W_q, W_k and W_v as three
  ``Linear`` layers where divekit stacks them into one ``in_proj_weight`` (3d, d); every other tensor
  is a renaming. Only the original style converts (``embed_norm``: Hugging Face's embeddings always
  have a LayerNorm), with ReLU or GELU.
* The book: ``bert.small.torch.zip`` and ``bert.base.torch.zip`` hold ``pretrained.params`` (the
  state dict of d2l's ``BERTModel``) and ``vocab.json`` (its ``idx_to_token``); :func:`from_d2l_state_dict`
  renames it, :func:`load_d2l_pretrained` fetches and loads one with its vocabulary. The book's
  loader always builds 4 heads, 2 layers and dropout 0.2 whatever it is asked (d2l-zh PR #1261): here
  the sizes come from the weights themselves, and the dropout is the book's 0.2.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from divekit.models.bert import BERTConfig, BERTModel
from divekit.ops import Ops

log = logging.getLogger("divekit")

__all__ = ["D2L_PRETRAINED", "config_from_hf", "from_d2l_state_dict", "from_hf_state_dict", "hf_config",
           "load_d2l_pretrained", "load_hf_checkpoint", "to_hf_state_dict"]

# per block: (divekit name, Hugging Face name under encoder.layer.{i}.), the attention's q, k, v aside
_BLOCK = (("attention.out_proj", "attention.output.dense"), ("addnorm1.norm", "attention.output.LayerNorm"),
          ("ffn.dense1", "intermediate.dense"), ("ffn.dense2", "output.dense"), ("addnorm2.norm", "output.LayerNorm"))
_TOP = (("encoder.token_embedding.weight", "bert.embeddings.word_embeddings.weight"),
        ("encoder.segment_embedding.weight", "bert.embeddings.token_type_embeddings.weight"),
        ("encoder.norm.weight", "bert.embeddings.LayerNorm.weight"),
        ("encoder.norm.bias", "bert.embeddings.LayerNorm.bias"),
        ("pooler.dense.weight", "bert.pooler.dense.weight"), ("pooler.dense.bias", "bert.pooler.dense.bias"),
        ("mlm.dense.weight", "cls.predictions.transform.dense.weight"),
        ("mlm.dense.bias", "cls.predictions.transform.dense.bias"),
        ("mlm.norm.weight", "cls.predictions.transform.LayerNorm.weight"),
        ("mlm.norm.bias", "cls.predictions.transform.LayerNorm.bias"),
        ("mlm.decoder.weight", "cls.predictions.decoder.weight"), ("mlm.decoder.bias", "cls.predictions.bias"),
        ("nsp.weight", "cls.seq_relationship.weight"), ("nsp.bias", "cls.seq_relationship.bias"))
# parts a checkpoint may lack as a whole: the heads (BertModel) or the pooler (BertForMaskedLM)
_OPTIONAL = ("pooler.", "mlm.", "nsp.")


def hf_config(cfg: BERTConfig) -> dict:
    """The keyword arguments of a ``transformers.BertConfig`` with ``cfg``'s sizes."""
    if not cfg.embed_norm:
        raise ValueError("only a BERT with --embed-norm converts to Hugging Face, whose embeddings always have a "
                         "LayerNorm; the book's style (no embedding LayerNorm) has no Hugging Face twin")
    return dict(vocab_size=cfg.vocab_size, hidden_size=cfg.num_hiddens, num_hidden_layers=cfg.num_layers,
                num_attention_heads=cfg.num_heads, intermediate_size=cfg.ffn_num_hiddens, hidden_act=cfg.activation,
                hidden_dropout_prob=cfg.dropout, attention_probs_dropout_prob=cfg.dropout,
                max_position_embeddings=cfg.max_positions, type_vocab_size=2, layer_norm_eps=cfg.norm_eps,
                tie_word_embeddings=cfg.tie_embeddings)


def config_from_hf(config: dict, **overrides) -> BERTConfig:
    """A :class:`BERTConfig` from a Hugging Face ``config.json`` (as a dict)."""
    act = config.get("hidden_act", "gelu")
    if act not in ("gelu", "relu"):
        raise ValueError(f"hidden_act {act!r} is not supported; divekit's BERT has gelu (exact) or relu")
    if config.get("type_vocab_size", 2) != 2:
        raise ValueError(f"type_vocab_size {config['type_vocab_size']} is not supported; BERT has 2 segments")
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"position_embedding_type {config['position_embedding_type']!r} is not supported; "
                         "divekit's BERT learns absolute positions")
    values = dict(vocab_size=config["vocab_size"], num_hiddens=config["hidden_size"],
                  ffn_num_hiddens=config["intermediate_size"], num_heads=config["num_attention_heads"],
                  num_layers=config["num_hidden_layers"], dropout=config.get("hidden_dropout_prob", 0.1),
                  max_positions=config["max_position_embeddings"], activation=act,
                  norm_eps=config.get("layer_norm_eps", 1e-12), embed_norm=True, init="bert",
                  tie_embeddings=config.get("tie_word_embeddings", True))
    return BERTConfig(**{**values, **overrides})


def _num_layers(state: dict, prefix: str) -> int:
    return len({key[len(prefix):].split(".", 1)[0] for key in state if key.startswith(prefix)})


def to_hf_state_dict(model: BERTModel) -> dict[str, torch.Tensor]:
    """``model``'s weights under ``BertForPreTraining``'s names (``bert.`` + a ``BertModel``'s names,
    ``cls.`` for the heads)."""
    hf_config(model.config)  # refuses the book's style
    ours = model.state_dict()
    state = {theirs: ours[mine] for mine, theirs in _TOP}
    state["bert.embeddings.position_embeddings.weight"] = ours["encoder.pos_embedding"][0]  # (1, L, d) -> (L, d)
    state["cls.predictions.decoder.bias"] = ours["mlm.decoder.bias"]
    for i in range(model.config.num_layers):
        mine, theirs = f"encoder.blocks.{i}.", f"bert.encoder.layer.{i}."
        for part, name in zip(("weight", "bias"), ("in_proj_weight", "in_proj_bias")):
            q, k, v = ours[mine + "attention." + name].chunk(3)  # (3d, ...) -> 3 x (d, ...)
            for which, tensor in zip(("query", "key", "value"), (q, k, v)):
                state[f"{theirs}attention.self.{which}.{part}"] = tensor
        for ours_name, their_name in _BLOCK:
            for part in ("weight", "bias"):
                state[f"{theirs}{their_name}.{part}"] = ours[f"{mine}{ours_name}.{part}"]
    return {key: value.detach().clone() for key, value in state.items()}


def from_hf_state_dict(state: dict[str, torch.Tensor], tie_word_embeddings: bool = True) -> dict[str, torch.Tensor]:
    """A Hugging Face BERT state dict (``BertModel``'s names, or ``BertForPreTraining``'s with ``bert.``
    and ``cls.``; old checkpoints' LayerNorm ``gamma``/``beta`` too) under divekit's names. Without the
    pretraining heads (a ``BertModel``), the result has no ``mlm.`` and ``nsp.`` entries. With
    ``tie_word_embeddings`` (config.json's, True by default), a masked-LM head without its decoder weight
    takes the word embeddings, which ``save_pretrained`` leaves out of the file as the same tensor."""
    renamed = {}
    for key, value in state.items():
        key = key if key.startswith(("bert.", "cls.")) else "bert." + key
        key = key.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        renamed[key] = value
    tied = "cls.predictions.decoder.weight"
    if tie_word_embeddings and tied not in renamed and any(key.startswith("cls.predictions.") for key in renamed):
        renamed[tied] = renamed["bert.embeddings.word_embeddings.weight"]
    ours = {mine: renamed[theirs] for mine, theirs in _TOP if theirs in renamed}
    missing = [theirs for mine, theirs in _TOP if theirs not in renamed and not mine.startswith(_OPTIONAL)]
    if missing or "bert.embeddings.position_embeddings.weight" not in renamed:
        raise ValueError(f"not a BERT state dict: it has no {', '.join(missing) or 'position embeddings'}")
    ours["encoder.pos_embedding"] = renamed["bert.embeddings.position_embeddings.weight"][None]  # (L, d) -> (1, L, d)
    for i in range(_num_layers(renamed, "bert.encoder.layer.")):
        mine, theirs = f"encoder.blocks.{i}.", f"bert.encoder.layer.{i}."
        for part, name in zip(("weight", "bias"), ("in_proj_weight", "in_proj_bias")):
            ours[mine + "attention." + name] = torch.cat(
                [renamed[f"{theirs}attention.self.{which}.{part}"] for which in ("query", "key", "value")])  # (3d, ...)
        for ours_name, their_name in _BLOCK:
            for part in ("weight", "bias"):
                ours[f"{mine}{ours_name}.{part}"] = renamed[f"{theirs}{their_name}.{part}"]
    return ours


def _load(model: BERTModel, state: dict[str, torch.Tensor], source: str) -> BERTModel:
    """Load ``state`` into ``model``; only a whole pretraining head or the pooler may be missing (it stays as
    drawn): part of one missing would leave the rest of it drawn at random under loaded weights."""
    result = model.load_state_dict(state, strict=False)
    present = {part for part in _OPTIONAL if any(key.startswith(part) for key in state)}  # in the file
    missing = [key for key in result.missing_keys if not key.startswith(_OPTIONAL) or key.startswith(tuple(present))]
    if missing or result.unexpected_keys:
        raise ValueError(f"{source} does not fit this BERT: missing {missing}, unexpected {result.unexpected_keys}")
    return model


def hf_checkpoint_weights(folder: Path, to_fine_tune: bool = False) -> Path:
    """The weights file of a Hugging Face BERT checkpoint folder (model.safetensors, else pytorch_model.bin),
    or a one-line error naming every file it lacks: config.json, the weights, and ``to_fine_tune`` also
    vocab.txt (texts cannot be tokenized without it)."""
    weights = next((folder / name for name in ("model.safetensors", "pytorch_model.bin") if (folder / name).is_file()),
                   None)
    missing = [name for name in ("config.json",) + ("vocab.txt",) * to_fine_tune if not (folder / name).is_file()]
    missing += ["model.safetensors or pytorch_model.bin"] * (weights is None)
    if missing:
        raise FileNotFoundError(f"{folder} is not a Hugging Face checkpoint folder{' to fine-tune' * to_fine_tune}: "
                                f"it has no {', no '.join(missing)}")
    return weights


def load_hf_checkpoint(folder: str | Path, ops: str | Ops = "fast", **overrides):
    """A Hugging Face BERT checkpoint folder -> (a divekit :class:`BERTModel` holding its weights, the
    :class:`~divekit.data.wordpiece.WordPieceVocab` of its ``vocab.txt``, lower-casing, stripping accents
    and splitting CJK characters as its ``tokenizer_config.json`` says (each by default); None without a
    ``vocab.txt``). ``overrides`` change
    config values that do not touch the weights' shapes (e.g. ``dropout``)."""
    from divekit.data.wordpiece import WordPieceVocab
    from divekit.ops import get_ops

    folder = Path(folder)
    weights = hf_checkpoint_weights(folder)
    hf = json.loads((folder / "config.json").read_text())
    if weights.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise ImportError(f"{weights} needs the safetensors package: pip install safetensors") from None
        state = load_file(str(weights))
    else:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    model = BERTModel(config_from_hf(hf, **overrides), get_ops(ops))
    state = from_hf_state_dict(state, hf.get("tie_word_embeddings", True))
    if "pooler.dense.weight" not in state:
        log.warning(f"{folder} has no pooler (as a BertForMaskedLM checkpoint): it starts from a fresh "
                    f"initialisation, as Hugging Face starts it")
    _load(model, state, str(folder))
    settings = folder / "tokenizer_config.json"
    tokenizer = json.loads(settings.read_text()) if settings.is_file() else {}
    vocab = WordPieceVocab.from_file(folder / "vocab.txt", tokenizer.get("do_lower_case", True),
                                     tokenizer.get("strip_accents"), tokenizer.get("tokenize_chinese_chars", True)) \
        if (folder / "vocab.txt").is_file() else None
    return model, vocab


# -- the book's pretrained weights ---------------------------------------------------------------------

D2L_PRETRAINED = {"bert.small": "d2l-bert.small", "bert.base": "d2l-bert.base"}  # the book's name -> data hub name
_D2L_BLOCK = (("attention.out_proj", "attention.W_o"), ("addnorm1.norm", "addnorm1.ln"), ("ffn.dense1", "ffn.dense1"),
              ("ffn.dense2", "ffn.dense2"), ("addnorm2.norm", "addnorm2.ln"))
_D2L_TOP = (("encoder.token_embedding.weight", "encoder.token_embedding.weight"),
            ("encoder.segment_embedding.weight", "encoder.segment_embedding.weight"),
            ("encoder.pos_embedding", "encoder.pos_embedding"),
            ("pooler.dense.weight", "hidden.0.weight"), ("pooler.dense.bias", "hidden.0.bias"),
            ("mlm.dense.weight", "mlm.mlp.0.weight"), ("mlm.dense.bias", "mlm.mlp.0.bias"),
            ("mlm.norm.weight", "mlm.mlp.2.weight"), ("mlm.norm.bias", "mlm.mlp.2.bias"),
            ("mlm.decoder.weight", "mlm.mlp.3.weight"), ("mlm.decoder.bias", "mlm.mlp.3.bias"),
            ("nsp.weight", "nsp.output.weight"), ("nsp.bias", "nsp.output.bias"))


def d2l_pretrained_dataset(name: str) -> str:
    """The data hub's name for the book's pretrained BERT ``name`` (see :data:`D2L_PRETRAINED`), or why
    there is none."""
    if name not in D2L_PRETRAINED:
        raise ValueError(f"unknown d2l pretrained BERT {name!r}; the book's are {' and '.join(D2L_PRETRAINED)} "
                         f"(on the command line --pretrained {', '.join('d2l:' + known for known in D2L_PRETRAINED)})")
    return D2L_PRETRAINED[name]


def from_d2l_state_dict(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict]:
    """The state dict of d2l's ``BERTModel`` (D2L §14.8) under divekit's names, and the config values
    its shapes give (vocab_size, num_hiddens, ffn_num_hiddens, num_layers, max_positions; the heads cannot
    be read from the weights)."""
    if "encoder.blks.0.attention.W_q.weight" not in state:
        raise ValueError("not a state dict of d2l's BERTModel: it has no encoder.blks.0.attention.W_q.weight")
    ours = {mine: state[theirs] for mine, theirs in _D2L_TOP}
    num_layers = _num_layers(state, "encoder.blks.")
    for i in range(num_layers):
        mine, theirs = f"encoder.blocks.{i}.", f"encoder.blks.{i}."
        for part, name in zip(("weight", "bias"), ("in_proj_weight", "in_proj_bias")):
            ours[mine + "attention." + name] = torch.cat(
                [state[f"{theirs}attention.W_{which}.{part}"] for which in "qkv"])  # 3 x (d, ...) -> (3d, ...)
        for ours_name, their_name in _D2L_BLOCK:
            for part in ("weight", "bias"):
                ours[f"{mine}{ours_name}.{part}"] = state[f"{theirs}{their_name}.{part}"]
    _, max_len, d = state["encoder.pos_embedding"].shape
    sizes = dict(vocab_size=state["encoder.token_embedding.weight"].shape[0], num_hiddens=d, max_positions=max_len,
                 ffn_num_hiddens=state["encoder.blks.0.ffn.dense1.weight"].shape[0], num_layers=num_layers)
    return ours, sizes


def load_d2l_pretrained(name: str = "bert.small", ops: str | Ops = "fast", data_dir=None, **overrides):
    """The book's pretrained BERT (D2L §15.7) -> (a :class:`BERTModel` of the book's style holding it,
    its :class:`~divekit.data.text.Vocab`). ``bert.small`` has 4 heads, ``bert.base`` 12 (the book's
    §15.7 sizes), dropout 0.2 as the book's loader builds it; ``overrides`` set other config values."""
    from divekit.data import hub
    from divekit.data.text import Vocab
    from divekit.ops import get_ops

    folder = hub.fetch(d2l_pretrained_dataset(name), data_dir=data_dir)
    state = torch.load(folder / "pretrained.params", map_location="cpu", weights_only=True)
    ours, sizes = from_d2l_state_dict(state)
    heads = {"bert.small": 4, "bert.base": 12}[name]
    model = BERTModel(BERTConfig(**{**sizes, "num_heads": heads, "dropout": 0.2, **overrides}), get_ops(ops))
    _load(model, ours, str(folder / "pretrained.params"))
    vocab = Vocab.from_tokens(json.loads((folder / "vocab.json").read_text()))
    return model, vocab
