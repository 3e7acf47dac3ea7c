"""Whether compressing a small message pays on a link class.

Compressing costs the gateway one encode per message (shared by every reader of the
class) and each reader one decode; it saves each reader the bytes not sent. With the
cost of :mod:`.cost`, per reader and message::

    compressed:  w_cpu · (t_enc / readers + t_dec) + wire · 8 / bandwidth
    plain:                                           raw · 8 / bandwidth

On a same-host link bytes are nearly free and the plain frame wins; on broadband or a
slow link the dictionary's saving wins by far.
"""

from __future__ import annotations

from frys.gateway.optimiser.cost import CostWeights, LinkClass

DEFAULT_ENCODE_S = 1.0e-6
DEFAULT_DECODE_S = 0.6e-6
"""What a dictionary-compressed small frame costs before anything is measured."""


def compressed_cost(
    weights: CostWeights,
    link: LinkClass,
    wire: float,
    enc_s: float,
    dec_s: float,
    readers: int = 1,
) -> float:
    return weights.w_cpu * (enc_s / max(readers, 1) + dec_s) + wire * 8.0 / weights.bandwidth(link)


def plain_cost(weights: CostWeights, link: LinkClass, raw: float) -> float:
    return raw * 8.0 / weights.bandwidth(link)


def compression_pays(
    weights: CostWeights,
    link: LinkClass,
    raw: float,
    wire: float,
    enc_s: float | None = None,
    dec_s: float | None = None,
    readers: int = 1,
) -> bool:
    """Whether a reader on ``link`` is better served by the compressed frame."""
    enc = DEFAULT_ENCODE_S if enc_s is None else enc_s
    dec = DEFAULT_DECODE_S if dec_s is None else dec_s
    return compressed_cost(weights, link, wire, enc, dec, readers) < plain_cost(weights, link, raw)
