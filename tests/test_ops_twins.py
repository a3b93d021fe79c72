"""The twin contract of ``divekit.ops``: the scratch and fast namespaces export the same names,
topic by topic, without collisions, and every pair takes the same arguments."""

import inspect

import pytest
from torch import nn

from divekit.ops import IMPLS, get_ops, scratch, fast

NAMES = sorted(scratch.__all__)


def test_both_twins_export_the_same_topics_and_names():
    assert [t.__name__.rsplit(".", 1)[1] for t in scratch.TOPICS] == [t.__name__.rsplit(".", 1)[1] for t in fast.TOPICS]
    for s_topic, f_topic in zip(scratch.TOPICS, fast.TOPICS):
        assert sorted(s_topic.__all__) == sorted(f_topic.__all__), s_topic.__name__
    assert sorted(scratch.__all__) == sorted(fast.__all__)


@pytest.mark.parametrize("ops", [scratch, fast], ids=IMPLS)
def test_no_name_is_exported_twice_or_shadows_a_topic(ops):
    assert len(ops.__all__) == len(set(ops.__all__)), "a name is exported by two topics"
    topics = {t.__name__.rsplit(".", 1)[1] for t in ops.TOPICS}
    assert not topics & set(ops.__all__)
    for topic in ops.TOPICS:
        for name in topic.__all__:
            assert getattr(ops, name) is getattr(topic, name), f"ops.{name} is not {topic.__name__}.{name}"


def _parameters(obj) -> list[inspect.Parameter]:
    return list(inspect.signature(obj).parameters.values())


@pytest.mark.parametrize("name", NAMES)
def test_each_scratch_twin_takes_its_fast_twins_leading_arguments(name):
    """Same names, kinds and defaults, in the same order; the fast twin (often torch's own class)
    may take further arguments after them, all optional (device, dtype, padding_mode, ...)."""
    s, f = getattr(scratch, name), getattr(fast, name)
    shared = {n for topic in fast.TOPICS for n in getattr(topic, "SHARED", ())}
    assert (s is f) == (name in shared), f"{name}: a fast twin that is the scratch object must be listed in SHARED"
    assert callable(s) and callable(f)
    assert isinstance(s, type) == isinstance(f, type), f"{name}: one twin is a class, the other is not"
    if isinstance(s, type) and issubclass(f, nn.Module):
        assert issubclass(s, nn.Module), f"{name}: the fast twin is a layer, the scratch one is not"
    ps, pf = _parameters(s), _parameters(f)
    assert len(ps) <= len(pf), f"{name}: scratch takes {[p.name for p in ps]}, fast only {[p.name for p in pf]}"
    for p_s, p_f in zip(ps, pf):
        assert (p_s.name, p_s.kind, p_s.default) == (p_f.name, p_f.kind, p_f.default), \
            f"{name}: scratch argument {p_s} differs from fast {p_f}"
    for extra in pf[len(ps):]:
        assert extra.default is not inspect.Parameter.empty or extra.kind in (
            inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD), f"{name}: fast needs {extra.name}"


def test_shared_names_are_exported_and_documented():
    """Where no faster kernel exists the fast topic re-exports the scratch object and says so in ``SHARED``."""
    for topic in fast.TOPICS:
        for name in getattr(topic, "SHARED", ()):
            assert name in topic.__all__ and getattr(topic, name).__module__.startswith("divekit.ops.scratch"), name


def test_get_ops_takes_a_name_or_a_namespace():
    assert get_ops("scratch") is scratch and get_ops("fast") is fast and get_ops(fast) is fast
    with pytest.raises(ValueError, match="unknown impl 'torch'; choose one of scratch, fast"):
        get_ops("torch")
    with pytest.raises(ValueError, match="not an ops namespace"):
        get_ops(inspect)
