"""divekit: the Dive into Deep Learning curriculum (d2l.ai, PyTorch edition) as tested software.

Layout: ``data`` (data sets and loaders), ``ops`` (scratch and fast primitives), ``models`` (by
family), ``optim`` (optimizers), ``train`` (the training engine), ``experiments`` (the book's
experiments, one name each), ``viz`` (figures), ``predict`` (trained runs put to use), ``cli``
(the ``divekit`` command).

From Python, as from the command line::

    import divekit
    run = divekit.run("softmax-regression", epochs=3)    # the same run folder as `divekit run`
    predictor = divekit.load(run.run_dir)                 # the trained model with its preprocessing
    predictor.predict(["shoe.png"])
"""

__version__ = "0.1.0"

__all__ = ["__version__", "load", "run"]


def __getattr__(name):  # imported on first use, so that `import divekit` and `divekit --help` stay quick
    if name == "run":
        from divekit.experiments.runner import run

        return run
    if name == "load":
        from divekit.predict import load

        return load
    raise AttributeError(f"module 'divekit' has no attribute {name!r}")
