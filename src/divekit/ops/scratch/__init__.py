"""Scratch primitives, written from tensor operations to be read top to bottom.

Each topic file lists its public names in ``__all__``; ``ops.fast`` mirrors them name for name.
"""

from divekit.ops.scratch import losses
from divekit.ops.scratch.losses import *  # noqa: F401,F403
from divekit.ops.scratch import conv
from divekit.ops.scratch.conv import *  # noqa: F401,F403
from divekit.ops.scratch import norm
from divekit.ops.scratch.norm import *  # noqa: F401,F403
from divekit.ops.scratch import rnn
from divekit.ops.scratch.rnn import *  # noqa: F401,F403
from divekit.ops.scratch import activations
from divekit.ops.scratch.activations import *  # noqa: F401,F403
from divekit.ops.scratch import regularization
from divekit.ops.scratch.regularization import *  # noqa: F401,F403
from divekit.ops.scratch import init
from divekit.ops.scratch.init import *  # noqa: F401,F403
from divekit.ops.scratch import boxes
from divekit.ops.scratch.boxes import *  # noqa: F401,F403
from divekit.ops.scratch import roi
from divekit.ops.scratch.roi import *  # noqa: F401,F403

__all__ = [*losses.__all__, *conv.__all__, *norm.__all__, *rnn.__all__, *activations.__all__, *regularization.__all__, *init.__all__,
           *boxes.__all__, *roi.__all__]
