"""Scratch primitives, written from tensor operations to be read top to bottom (the twin of ``ops.fast``).

Each topic module lists its public names in ``__all__``; every name is also exported here, flat
(``ops.Conv2d``), and ``ops.fast`` mirrors them name for name, with the same arguments.
"""

from divekit.ops.scratch import (activations, attention, boxes, containers, conv, init, linear, losses, norm,
                                 regularization, rnn, roi)

NAME = "scratch"
TOPICS = (activations, attention, boxes, containers, conv, init, linear, losses, norm, regularization, rnn, roi)

from divekit.ops.scratch.activations import *  # noqa: F401,F403
from divekit.ops.scratch.attention import *  # noqa: F401,F403
from divekit.ops.scratch.boxes import *  # noqa: F401,F403
from divekit.ops.scratch.containers import *  # noqa: F401,F403
from divekit.ops.scratch.conv import *  # noqa: F401,F403
from divekit.ops.scratch.init import *  # noqa: F401,F403
from divekit.ops.scratch.linear import *  # noqa: F401,F403
from divekit.ops.scratch.losses import *  # noqa: F401,F403
from divekit.ops.scratch.norm import *  # noqa: F401,F403
from divekit.ops.scratch.regularization import *  # noqa: F401,F403
from divekit.ops.scratch.rnn import *  # noqa: F401,F403
from divekit.ops.scratch.roi import *  # noqa: F401,F403

__all__ = [name for topic in TOPICS for name in topic.__all__]
