"""Processing: frames in, results out, and between two frames the settings and the model swapped.

Owns the processor (threads, bounded queues, the start/stop state machine), the pipeline (a frame to
a result, pure), the statistics (counters, rates, latency), the run-time settings and their checks,
the ROI, and the :class:`~vi_stream.processing.control.Control` interface that the web layer, the
client and the page drive. May import the base modules (errors, frame, ratelog, threads) and
``model``; never ``web``, ``store``, ``service`` or ``cli``: results leave through the sinks it is given.
"""
