"""divekit: the Dive into Deep Learning curriculum (d2l.ai, PyTorch edition) as tested software.

Layout: ``data`` (data sets and loaders), ``ops`` (scratch and fast primitives), ``models`` (by
family), ``optim`` (optimizers), ``train`` (the training engine), ``experiments`` (the book's
experiments, one name each), ``viz`` (figures), ``cli`` (the ``divekit`` command).
"""

__version__ = "0.1.0"
