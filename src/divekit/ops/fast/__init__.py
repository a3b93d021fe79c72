"""Fast primitives on PyTorch's kernels, with the same names and signatures as ``ops.scratch``."""

from divekit.ops.fast import losses
from divekit.ops.fast.losses import *  # noqa: F401,F403
from divekit.ops.fast import conv
from divekit.ops.fast.conv import *  # noqa: F401,F403
from divekit.ops.fast import norm
from divekit.ops.fast.norm import *  # noqa: F401,F403
from divekit.ops.fast import rnn
from divekit.ops.fast.rnn import *  # noqa: F401,F403
from divekit.ops.fast import activations
from divekit.ops.fast.activations import *  # noqa: F401,F403
from divekit.ops.fast import regularization
from divekit.ops.fast.regularization import *  # noqa: F401,F403
from divekit.ops.fast import init
from divekit.ops.fast.init import *  # noqa: F401,F403
from divekit.ops.fast import boxes
from divekit.ops.fast.boxes import *  # noqa: F401,F403
from divekit.ops.fast import roi
from divekit.ops.fast.roi import *  # noqa: F401,F403

__all__ = [*losses.__all__, *conv.__all__, *norm.__all__, *rnn.__all__, *activations.__all__, *regularization.__all__, *init.__all__,
           *boxes.__all__, *roi.__all__]
