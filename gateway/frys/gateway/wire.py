"""Wire classes: which subscribers can share the very same bytes of a delivery.

The hub frames each tick's messages once per wire class and hands the same bytes to every
subscriber of that class. Before compression there were two classes (MessagePack, JSON);
now a class also says whether its readers decode dictionary-compressed frames and tensor
codecs 5-7 (``connect.codecs``, docs/protocol.md §15) and, for those, on which class of link
they sit, since whether compressing pays depends on it (docs/optimiser.md). Readers that
declared nothing all share one class whatever their link: they get plain frames.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from frys.gateway.optimiser.cost import LinkClass
from frys.shared.protocol.zdict import CODEC_ZSTD_DICT

CODEC_TENSOR_EXT = "tensor-ext"
"""Tensor payload codecs 5-7 (docs/tensor-frames.md §7)."""


class WireClass(NamedTuple):
    """What a subscriber decodes, and where it sits (see the module docstring)."""

    binary: bool
    """MessagePack (binary frames) rather than JSON."""
    dictionary: bool = False
    """Decodes dictionary-compressed frames."""
    tensor_ext: bool = False
    """Decodes tensor codecs 5-7."""
    link: LinkClass | None = None
    """The reader's link class, for readers whose frames depend on it."""


PLAIN_MSGPACK = WireClass(True)
PLAIN_JSON = WireClass(False)


def wire_class(binary: bool, codecs: Iterable[str], link: LinkClass | None) -> WireClass:
    """The class of a session: JSON sessions and sessions that declared no codec are
    plain whatever their link; the others are told apart by link too."""
    if not binary:
        return PLAIN_JSON
    declared = set(codecs)
    dictionary = CODEC_ZSTD_DICT in declared
    tensor_ext = CODEC_TENSOR_EXT in declared
    if not dictionary and not tensor_ext:
        return PLAIN_MSGPACK
    return WireClass(True, dictionary, tensor_ext, link or LinkClass.FAST)
