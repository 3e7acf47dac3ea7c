"""Errors raised while decoding tensor frames.

Decoding raises only :class:`TensorError` subclasses, whatever bytes it is given:
:class:`TensorFrameError` for bytes that are not a usable frame (corrupt, truncated, unknown
version, over the limits) and :class:`TensorGapError` for a valid delta that does not follow
the state held (another base sequence, or another encoder's epoch). Either way the decoder
keeps the state it had, and the usual remedy is to ask for a keyframe.
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
    """A delta that does not follow the state the decoder holds: resync needed.

    Either frames were lost or reordered (``base`` is not the sequence held), or the delta
    comes from another encoder instance than the held state (``epoch`` differs from
    ``held_epoch``: the publisher restarted, or two publishers share the stream id), whose
    sequences say nothing about this state. ``held`` and ``held_epoch`` describe the state
    held (``None`` before the first keyframe); ``base`` and ``epoch`` the state the delta
    applies to. Ask the publisher or a relay for a keyframe.
    """

    def __init__(
        self,
        held: int | None,
        base: int,
        *,
        held_epoch: int | None = None,
        epoch: int | None = None,
    ) -> None:
        if held is None:
            held_text = "no keyframe yet"
        elif held_epoch is not None and epoch is not None and held_epoch != epoch:
            held_text = f"holds epoch {held_epoch:08x}, not the delta's epoch {epoch:08x}"
        else:
            held_text = f"holds sequence {held}"
        super().__init__(f"delta applies to sequence {base}, decoder {held_text}: resync needed")
        self.held = held
        self.base = base
        self.held_epoch = held_epoch
        self.epoch = epoch
