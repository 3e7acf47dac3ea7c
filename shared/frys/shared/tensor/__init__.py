"""Tensor frames: numpy arrays streamed as keyframes and XOR deltas (sans-I/O).

See ``docs/tensor-frames.md`` for the normative byte layout. The usual pipeline is
:class:`TensorEncoder` on the publisher, :class:`ChunkAssembler` wherever chunk frames are
received, :class:`TensorReplica` on relays and :class:`TensorDecoder` on subscribers.
"""

from frys.shared.tensor.chunks import ChunkAssembler, split_frame
from frys.shared.tensor.decoder import TensorDecoder, TensorReplica
from frys.shared.tensor.dtypes import ELEMENT_TYPES, ElementType, element_type
from frys.shared.tensor.encoder import TensorEncoder
from frys.shared.tensor.errors import (
    TensorError,
    TensorFrameError,
    TensorGapError,
    TensorLimitError,
)
from frys.shared.tensor.frame import (
    ChunkHeader,
    Codec,
    DeltaHeader,
    FrameHeader,
    KeyframeHeader,
    Kind,
    read_header,
)
from frys.shared.tensor.limits import (
    DEFAULT_CHUNK_LIMITS,
    DEFAULT_CHUNK_SIZE,
    DEFAULT_LIMITS,
    ChunkLimits,
    TensorLimits,
)
from frys.shared.tensor.precision import Precision, Representation

__all__ = [
    "DEFAULT_CHUNK_LIMITS",
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_LIMITS",
    "ELEMENT_TYPES",
    "ChunkAssembler",
    "ChunkHeader",
    "ChunkLimits",
    "Codec",
    "DeltaHeader",
    "ElementType",
    "FrameHeader",
    "KeyframeHeader",
    "Kind",
    "Precision",
    "Representation",
    "TensorDecoder",
    "TensorEncoder",
    "TensorError",
    "TensorFrameError",
    "TensorGapError",
    "TensorLimitError",
    "TensorLimits",
    "TensorReplica",
    "element_type",
    "read_header",
    "split_frame",
]
