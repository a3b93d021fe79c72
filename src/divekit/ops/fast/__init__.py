"""Fast primitives on PyTorch's kernels, with the names and arguments of ``ops.scratch``.

Each topic module lists its public names in ``__all__``; every name is also exported here, flat.
"""

from divekit.ops.fast import (activations, attention, boxes, containers, conv, init, linear, losses, norm,
                              regularization, rnn, roi)

NAME = "fast"
TOPICS = (activations, attention, boxes, containers, conv, init, linear, losses, norm, regularization, rnn, roi)

from divekit.ops.fast.activations import *  # noqa: F401,F403
from divekit.ops.fast.attention import *  # noqa: F401,F403
from divekit.ops.fast.boxes import *  # noqa: F401,F403
from divekit.ops.fast.containers import *  # noqa: F401,F403
from divekit.ops.fast.conv import *  # noqa: F401,F403
from divekit.ops.fast.init import *  # noqa: F401,F403
from divekit.ops.fast.linear import *  # noqa: F401,F403
from divekit.ops.fast.losses import *  # noqa: F401,F403
from divekit.ops.fast.norm import *  # noqa: F401,F403
from divekit.ops.fast.regularization import *  # noqa: F401,F403
from divekit.ops.fast.rnn import *  # noqa: F401,F403
from divekit.ops.fast.roi import *  # noqa: F401,F403

__all__ = [name for topic in TOPICS for name in topic.__all__]
