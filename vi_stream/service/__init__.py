"""The daemon as a service: its options, its wiring, its life under systemd.

Owns :mod:`.config` (DaemonConfig: the one list of options, for flags, YAML and ``GET /config``),
:mod:`.daemon` (choosing and opening the store, the model or the alias it follows, the processor,
the sinks, the REST app; their lifetimes), :mod:`.desks` (the steps behind the control interface's
results and models: reviewing, the gated promotion, telling the followers an alias moved) and :mod:`.systemd` (sd_notify, the progress watchdog,
journal logging). It is the only package that wires the others together; it may import any of
them but ``cli``.
"""
