"""The results store: what is kept of every result, and where.

Owns the store protocols (results, images, the registry's shelf), opening a store from its name
(:mod:`vi_stream.store.opening`), the record (a result as stored:
side document, PNGs, deterministic ids, tiles), the writer (queue, render, write, spool on an
outage, ordered replay), the spool, review (corrected masks and verified tiles) and the two backends:
the embedded local store (SQLite + PNG files) and MongoDB + GridFS. May import the base modules,
``model`` (colour maps for the stored maps) and ``io`` (durable files); never ``processing``,
``web``, ``service`` or ``cli``: the daemon and the CLI open a store here and hand it on.
"""
