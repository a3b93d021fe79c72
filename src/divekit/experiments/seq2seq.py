"""Sequence to sequence learning (D2L §9.5-9.8): a GRU encoder-decoder translating English to
French, trained with teacher forcing and a masked cross-entropy, then asked for the book's four
example translations, each scored with the book's BLEU (k = 2). A finished run translates what a
user types through :func:`divekit.load` (:class:`divekit.predict.Translator`)."""

from __future__ import annotations

from divekit.experiments.parts import FraEng, TeacherForcing, Translations
from divekit.experiments.registry import Recipe, register

register(Recipe(
    name="seq2seq", section="9.5-9.7", title="Sequence to sequence learning: GRU encoder-decoder, English to French",
    data=FraEng(), model="seq2seq", task=TeacherForcing(),
    train=dict(epochs=300, lr=0.005, batch_size=64, optimizer="adam", clip_grad=1.0),
    probes=(Translations(),), tiny=dict(epochs=1, limit=64, embed_size=8, num_hiddens=8),
))
