"""The protocol optimiser: learns which encoding serves each stream best and adapts.

Pure parts, one job each, no I/O: robust running estimates (:mod:`.estimate`), the cost of
a choice and the link classes (:mod:`.cost`), per-connection link estimation
(:mod:`.links`), the arm selector with shadow probing and hysteresis (:mod:`.bandit`), the
per-stream tensor optimiser built on it (:mod:`.tensor`), message schemas (:mod:`.schema`)
and the dictionary learner for small messages (:mod:`.learner`). The gateway's glue
(:mod:`frys.gateway.optimise`) feeds them and stores what they learn in NATS.
"""
