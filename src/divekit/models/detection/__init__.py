"""Object detectors (D2L §13.7 and beyond), each built once from the ops twin it is given and registered
by name: the book's TinySSD (``tinyssd``) and a single-stage grid detector in the YOLO line
(``yolo``), which reuses TinySSD's base network.

A detector's ``forward`` returns the raw outputs its training task reads (anchors and predictions);
``detect(X)`` returns, per image, a dict of ``boxes`` (N, 4) relative corners, ``scores`` (N,) and
``labels`` (N,): the format of :mod:`divekit.metrics.detection` and of the figures.
"""

from divekit.models.detection.base import Detector, DetectorConfig
from divekit.models.detection.ssd import SSDOutput, TinySSD
from divekit.models.detection.yolo import GridDetector, GridOutput

__all__ = ["Detector", "DetectorConfig", "GridDetector", "GridOutput", "SSDOutput", "TinySSD"]
