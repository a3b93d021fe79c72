"""The experiments of the book, one name each (``divekit list`` shows them), in two forms.

A :class:`Recipe` is a training run declared in a few lines: its data, its model (a registered
model name and config values), its task, the book's training options, and probes that report on
the trained model::

    register(Recipe(
        name="lenet", section="6.6", title="LeNet-5",
        data=FashionMNIST(), model="lenet", task=Classify(),
        train=dict(epochs=10, lr=0.9), probes=(PredictionGrid(),), user_data_kind="classification",
    ))

Its options (the ``divekit run NAME`` flags) are the fields of all of these, with the recipe's
values as defaults: a recipe cannot ignore an option it shows, and a clash of names is an error.

A :class:`Demo` is a plain typed function that computes results and figures (a trajectory, a
figure of activations, a k-fold cross-validation); its options are its keyword parameters,
``Annotated`` with their help text::

    @demo("gd-trajectories", section="11.3", title="Gradient descent", dataset="functions: x^2, ...")
    def gd_trajectories(impl: Impl = "fast") -> DemoResult: ...

The book's numbers live in ``reference/*.json``; an experiment's one-line description is derived
from them (:mod:`divekit.experiments.book`).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import pkgutil
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal, NamedTuple

from divekit.experiments import book
from divekit.experiments.parts import (USER_OPTIONS, DataPart, Probe, TaskPart, TrainOptions, UserDataOptions,
                                       UserDetectionOptions)
from divekit.options import at_least, check_fields, device_name, merge_fields, option, positive
from divekit.registry import Registry

# Options most demonstrations take, as annotations for their signatures
Impl = Annotated[Literal["scratch", "fast"], "scratch: built from tensor operations; fast: PyTorch's kernels"]
Seed = Annotated[int, "random seed", at_least(0)]
Device = Annotated[str, "auto, cpu, cuda, cuda:N or mps", device_name]
Epochs = Annotated[int, "number of passes over the training data", at_least(1)]
LearningRate = Annotated[float, "learning rate", positive]
BatchSize = Annotated[int, "examples per minibatch", at_least(1)]
Optimizer = Annotated[str, "sgd, momentum, adagrad, rmsprop, adadelta, adam, adamw or yogi (the --impl's class); "
                           "scratch-NAME for the scratch one whatever --impl"]


@dataclass
class Options:
    """Base of every experiment's options class: checks each value against its annotation, then
    lets the experiment check the combination (``Experiment.validate``)."""

    experiment: ClassVar[Experiment]

    def __post_init__(self):
        check_fields(self)
        self.experiment.validate(self)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(eq=False)
class DemoResult:
    """What a demonstration produces: numbers, figures (name -> matplotlib Figure, saved as
    NAME.png), optionally table rows (written as metrics.csv), and text files for the run folder."""

    results: dict
    figures: dict = field(default_factory=dict)
    rows: list[dict] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # file name -> text, e.g. a Kaggle submission.csv


@dataclass(frozen=True, eq=False)
class Experiment:
    """What every experiment has: its name, the book's section (classic edition numbering, as in
    ``shared/reference``), a title, what data it runs on, and a class of options."""

    name: str
    section: str
    title: str
    # option values for an --impl other than the default, where the book's from-scratch and concise
    # sections differ (e.g. how they initialise the same model): {"scratch": {"sigma": None}}
    impl_defaults: dict[str, dict] = field(default_factory=dict)

    def __post_init__(self):
        if self.impl_defaults and self.default_impl in self.impl_defaults:
            raise ValueError(f"{self.name}: the default impl's values belong in its defaults, not in impl_defaults")

    @property
    def dataset(self) -> str:
        raise NotImplementedError

    @property
    def display_options(self) -> tuple[str, ...]:
        """Options that only shape what is shown after training (not held to the book's numbers)."""
        return ()

    @property
    def options(self) -> type[Options]:
        raise NotImplementedError

    @property
    def user_data(self) -> str | None:
        return None

    @property
    def default_impl(self) -> str:
        return "fast"

    @property
    def defaults(self) -> dict[str, Any]:
        """The default value of every option (the book's settings)."""
        return {f.name: f.default for f in dataclasses.fields(self.options)}

    @property
    def description(self) -> str:
        """One line: the book's published number for this experiment where it has one, else ""."""
        return book.describe(self.name, self.default_impl, self.defaults)

    def validate(self, options: Options) -> None:
        """Raise ValueError for a combination of options that cannot run."""

    def make_options(self, **values) -> Options:
        """The options with ``values`` over the defaults (those of ``values``' impl, see ``impl_defaults``)."""
        impl = values.get("impl", self.default_impl)
        return self.options(**{**self.impl_defaults.get(impl, {}), **values})


class Parts(NamedTuple):
    """A recipe's parts with a run's option values in them."""

    train: TrainOptions
    user: UserDataOptions | UserDetectionOptions | None
    data: DataPart
    model_args: dict
    task: TaskPart
    probes: tuple[Probe, ...]


def _fields_of(obj) -> list[str]:
    return [f.name for f in dataclasses.fields(obj)]


@dataclass(frozen=True, eq=False)
class Recipe(Experiment):
    """A training run of a registered model on a data set (see the module docstring)."""

    data: DataPart = None
    model: str = ""
    task: TaskPart = None
    train: dict = field(default_factory=dict)  # the book's training options (TrainOptions fields)
    model_args: dict = field(default_factory=dict)  # config values over the registered model's preset
    probes: tuple[Probe, ...] = ()
    user_data_kind: str | None = None  # a key of USER_OPTIONS: the recipe takes --data (and --target for tables)
    tiny: dict = field(default_factory=dict)  # option values for a seconds-long smoke test

    def __post_init__(self):
        super().__post_init__()
        if self.data is None or self.task is None or not self.model:
            raise ValueError(f"recipe {self.name!r} needs data, a model and a task")
        if self.user_data_kind not in (None, *USER_OPTIONS):
            raise ValueError(f"recipe {self.name!r}: user_data_kind must be one of {', '.join(USER_OPTIONS)} or None")

    @property
    def dataset(self) -> str:
        return self.data.label

    @property
    def user_data(self) -> str | None:
        return self.user_data_kind

    @property
    def display_options(self) -> tuple[str, ...]:
        return tuple(f.name for probe in self.probes if not probe.compared for f in dataclasses.fields(probe))

    @property
    def default_impl(self) -> str:
        return self.train.get("impl", "fast")

    def model_option_names(self) -> list[str]:
        from divekit.models.registry import get_model

        return [name for name in _fields_of(get_model(self.model).config) if name not in self.data.PROVIDES]

    def _sources(self, model: bool = True) -> dict[str, tuple[type, dict]]:
        """Each part's dataclass and its defaults in this recipe, by a label for merge_fields'
        messages; the model's config (less the sizes the data gives) only with ``model``: it is
        defined in the model's module, which imports torch."""
        sources = {"the training options": (TrainOptions, self.train)}
        if self.user_data_kind is not None:
            sources["the user-data options"] = (USER_OPTIONS[self.user_data_kind], {})
        sources[f"the data ({type(self.data).__name__})"] = (type(self.data), dataclasses.asdict(self.data))
        if model:
            from divekit.models.registry import model_config

            model_defaults = dataclasses.asdict(model_config(self.model, **self.model_args))
            model_cls = type(model_config(self.model))
            model_fields = [f for f in dataclasses.fields(model_cls) if f.name not in self.data.PROVIDES]
            sources[f"the model ({self.model})"] = (_only(model_cls, model_fields), model_defaults)
        sources[f"the task ({type(self.task).__name__})"] = (type(self.task), dataclasses.asdict(self.task))
        for probe in self.probes:
            sources[f"the probe {type(probe).__name__}"] = (type(probe), dataclasses.asdict(probe))
        return sources

    @functools.cached_property
    def options(self) -> type[Options]:
        cls = merge_fields(_class_name(self.name), self._sources(), bases=(Options,))
        cls.experiment = self
        return cls

    @property
    def description(self) -> str:
        """As every experiment's, but from the defaults of the parts other than the model where the
        options that choose among the book's entries (``"when"``) are all theirs (``--loss``): then
        ``divekit list`` imports no model, nor torch."""
        config = {f.name: defaults.get(f.name, f.default)
                  for cls, defaults in self._sources(model=False).values() for f in dataclasses.fields(cls)}
        if not book.when_options(self.name, self.default_impl) <= config.keys():
            config = self.defaults
        return book.describe(self.name, self.default_impl, config)

    def parts(self, options: Options) -> Parts:
        values = options.to_dict()

        def pick(names):
            return {name: values[name] for name in names}

        return Parts(
            train=TrainOptions(**pick(_fields_of(TrainOptions))),
            user=(USER_OPTIONS[self.user_data_kind](**pick(_fields_of(USER_OPTIONS[self.user_data_kind])))
                  if self.user_data_kind else None),
            data=dataclasses.replace(self.data, **pick(_fields_of(self.data))),
            model_args=pick(self.model_option_names()),
            task=dataclasses.replace(self.task, **pick(_fields_of(self.task))),
            probes=tuple(dataclasses.replace(p, **pick(_fields_of(p))) for p in self.probes),
        )

    def validate(self, options):
        from divekit.models.registry import model_config

        from divekit.models.cnn.base import ImageClassifierConfig

        parts = self.parts(options)  # each part checks (and may normalise) its own values as it is made
        config = model_config(self.model, **parts.model_args)
        parts.data.check_model(config)
        if isinstance(config, ImageClassifierConfig) and parts.user is not None and parts.user.data is not None \
                and parts.user.data.lower().endswith(".csv"):
            raise ValueError(f"{self.name} is a convolutional network, which takes images: --data takes a folder of "
                             "images with one sub-folder per class; a CSV table trains linear-regression, "
                             "softmax-regression, mlp or dropout")
        if parts.user is not None and parts.user.data is not None:
            for name in parts.data.BOOK_ONLY:
                if getattr(parts.data, name) != getattr(self.data, name):
                    raise ValueError(f"--{name.replace('_', '-')} chooses or shapes the recipe's own data set; with "
                                     "--data your data is used: leave it out")
        for part in (parts.train, parts.user, parts.data, parts.task, *parts.probes):
            for name in _fields_of(part) if part is not None else ():
                setattr(options, name, getattr(part, name))  # e.g. --optimizer auto -> sgd, --data made absolute


def _only(cls: type, fields: list[dataclasses.Field]) -> type:
    """A dataclass with only ``fields`` of ``cls`` (their annotations and help kept)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    return dataclasses.make_dataclass(cls.__name__, [(f.name, hints[f.name], f) for f in fields])


def _class_name(name: str) -> str:
    """"rnn-scratch" -> "RnnScratchOptions"."""
    return "".join(part.capitalize() for part in re.split(r"[^a-zA-Z0-9]", name)) + "Options"


@dataclass(frozen=True, eq=False)
class Demo(Experiment):
    """A demonstration: ``function(**options) -> DemoResult``. A parameter named ``seed`` also seeds
    torch's generators before the call."""

    function: Callable[..., DemoResult] = None
    data: str = ""
    tiny: dict = field(default_factory=dict)
    selects: tuple[str, ...] = ()  # options that only choose which parts run: each part's numbers stay the book's
    preflight: Callable[[Options], None] | None = None  # refuses what the run needs besides its data, before it starts

    @property
    def dataset(self) -> str:
        return self.data

    @property
    def display_options(self) -> tuple[str, ...]:
        return self.selects

    @property
    def default_impl(self) -> str:
        parameter = inspect.signature(self.function).parameters.get("impl")
        return parameter.default if parameter is not None else "fast"

    @property
    def description(self) -> str:
        return book.describe(self.name, self.default_impl, self.defaults) or _first_sentence(self.function.__doc__)

    def validate(self, options):
        if hasattr(options, "optimizer"):  # the same names, aliases and message as a recipe's
            options.optimizer = TrainOptions(optimizer=options.optimizer).optimizer

    @functools.cached_property
    def options(self) -> type[Options]:
        hints = typing.get_type_hints(self.function, include_extras=True)
        specs = []
        for name, parameter in inspect.signature(self.function).parameters.items():
            if parameter.default is inspect.Parameter.empty:
                raise TypeError(f"demo {self.name}: parameter {name} needs a default (every option has one)")
            specs.append((name, hints[name], option(parameter.default, "")))
        cls = dataclasses.make_dataclass(_class_name(self.name), specs, bases=(Options,))
        cls.experiment = self
        return cls


def _first_sentence(text: str | None) -> str:
    paragraph = " ".join((text or "").strip().split("\n\n")[0].split())
    return paragraph.split(". ")[0].rstrip(".") + "."


_REGISTRY: Registry[Experiment] = Registry("experiment", "`divekit list` shows them all")


def register(experiment: Experiment) -> Experiment:
    return _REGISTRY.add(experiment.name, experiment)


def demo(name: str, *, section: str, title: str, dataset: str, tiny: dict | None = None, selects: tuple[str, ...] = (),
         preflight: Callable[[Options], None] | None = None):
    """Register the decorated function as a :class:`Demo`; ``selects`` and ``preflight``: see :class:`Demo`."""

    def decorator(function):
        register(Demo(name=name, section=section, title=title, function=function, data=dataset, tiny=tiny or {},
                      selects=selects, preflight=preflight))
        return function

    return decorator


def get_experiment(name: str) -> Experiment:
    _load_all()
    return _REGISTRY[name]


def all_experiments() -> list[Experiment]:
    """Every registered experiment, in the book's order of sections."""
    _load_all()
    return sorted(_REGISTRY.values(), key=lambda e: section_key(e.section))


def section_key(section: str) -> tuple[int, ...]:
    """"4.2-4.3" -> (4, 2): the first section number, as integers."""
    first = re.match(r"[\d.]+", section)
    return tuple(int(part) for part in first.group().strip(".").split(".")) if first else (999,)


_INFRASTRUCTURE = {"book", "parts", "registry", "runner"}


@functools.cache
def _load_all() -> None:
    """Import every experiment module of this package (each registers its experiments when
    imported); done lazily so that ``divekit --help`` stays quick."""
    import divekit.experiments as package

    for module in pkgutil.iter_modules(package.__path__):
        if module.name not in _INFRASTRUCTURE:
            importlib.import_module(f"{package.__name__}.{module.name}")
