"""Sequence to sequence learning (D2L §9.5-9.8): a GRU encoder-decoder translating English to
French, trained with teacher forcing and a masked cross-entropy, then asked for the book's four
example translations, each scored with the book's BLEU (k = 2). :class:`Translator` translates what
a user types with the model of a finished translation run (this chapter's or chapter 10's)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from divekit.data.text import Vocab
from divekit.experiments.parts import FraEng, TeacherForcing, Translations
from divekit.experiments.registry import Recipe, register
from divekit.models.seq2seq import EncoderDecoder, translate

register(Recipe(
    name="seq2seq", section="9.5-9.7", title="Sequence to sequence learning: GRU encoder-decoder, English to French",
    data=FraEng(), model="seq2seq", task=TeacherForcing(),
    train=dict(epochs=300, lr=0.005, batch_size=64, optimizer="adam", clip_grad=1.0),
    probes=(Translations(),), tiny=dict(epochs=1, limit=64, embed_size=8, num_hiddens=8),
))


@dataclass
class Translator:
    """A trained translation run, ready to translate what a user types: the model and the
    vocabularies of a run folder of ``seq2seq``, ``bahdanau``, ``transformer`` or
    ``transformer-large``. ``Translator.from_run(RUN_DIR)("I'm home.")`` -> "je suis chez moi ."

    The vocabularies are rebuilt from the run's ``config.json``: the data part is deterministic (the
    same pairs, the same held-out sentences, the same vocabularies for the same options), and a
    vocabulary that does not fit the checkpoint's embeddings (another fra.txt) is an error.
    """

    model: EncoderDecoder
    src_vocab: Vocab
    tgt_vocab: Vocab
    num_steps: int

    @classmethod
    def from_run(cls, run_dir: str | Path, device: str = "cpu") -> Translator:
        from divekit import io
        from divekit.experiments.registry import get_experiment
        from divekit.experiments.runner import CONFIG_NAME, prepare_training
        from divekit.options import from_dict
        from divekit.train.checkpoint import CHECKPOINT_NAME

        run_dir = Path(run_dir)
        if not (run_dir / CONFIG_NAME).exists() or not (run_dir / CHECKPOINT_NAME).exists():
            raise FileNotFoundError(f"{run_dir} is not a trained divekit run (it needs {CONFIG_NAME} and "
                                    f"{CHECKPOINT_NAME})")
        record = io.read_json(run_dir / CONFIG_NAME)
        experiment = get_experiment(record["experiment"])
        if not isinstance(getattr(experiment, "data", None), FraEng):
            raise ValueError(f"{run_dir} is a run of {experiment.name}, not of a translation model")
        options = from_dict(experiment.options, {**record["config"], "device": device}, str(run_dir / CONFIG_NAME))
        setup = prepare_training(experiment, options).setup
        try:
            setup.model.load_state_dict(io.load(run_dir / CHECKPOINT_NAME)["model"])
        except RuntimeError as error:
            raise ValueError(f"{run_dir}: the checkpoint does not fit the vocabularies rebuilt from {CONFIG_NAME} "
                             "(was fra.txt changed?)") from error
        setup.model.eval()
        data = setup.data.info
        return cls(setup.model, data.src_vocab, data.tgt_vocab, data.num_steps)

    def __call__(self, sentence: str, beam_size: int = 1, alpha: float = 0.75) -> str:
        """The translation of one sentence as typed (see :func:`divekit.models.seq2seq.translate`)."""
        return translate(self.model, sentence, self.src_vocab, self.tgt_vocab, self.num_steps, beam_size, alpha)
