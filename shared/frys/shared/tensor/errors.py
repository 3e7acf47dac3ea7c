"""Errors raised while decoding tensor frames.

Decoding raises only :class:`TensorError` subclasses, whatever bytes it is given:
:class:`TensorFrameError` for bytes that are not a usable frame (corrupt, truncated, unknown
version, over the limits) and :class:`TensorGapError` for a valid delta that does not follow
the state held. Either way the decoder keeps the state it had, and the usual remedy is to ask
for a keyframe.
"""

from __future__ import annotations

from frys.shared.protocol.errors import FrysError


class TensorError(FrysError):
    """Base class of tensor stream errors; ``reason`` says what was wrong."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TensorFrameError(TensorError):
    """Bytes that are not a valid tensor frame, or that do not fit the stream they were fed to."""


class TensorLimitError(TensorFrameError):
    """A frame that declares, or would expand to, more than the configured limits allow.

    Raised from the header alone, before anything is allocated or decompressed.
    """


class TensorGapError(TensorError):
    """A delta whose base is not the sequence the decoder holds: frames were lost or reordered.

    ``held`` is the sequence the decoder holds (``None`` before its first keyframe) and
    ``base`` the one the delta applies to. Ask the publisher or a relay for a keyframe.
    """

    def __init__(self, held: int | None, base: int) -> None:
        held_text = "no keyframe yet" if held is None else f"holds sequence {held}"
        super().__init__(f"delta applies to sequence {base}, decoder {held_text}")
        self.held = held
        self.base = base
