"""The web layer: the REST control plane and the operator's page, over the processing's Control
interface.

Owns the bottle app (:mod:`.app`) and its routes, one module per resource (:mod:`.routes`), the one
error reply every answer shares (:mod:`.replies`), the JSON bodies (:mod:`.body`), the page's login and CSRF
(:mod:`.auth`), the request guard (:mod:`.guard`: Host, Origin, Content-Type, login failures), the
monitor's live feed (:mod:`.live`: SSE, previews, trends), the HTTP server with its deadlines
(:mod:`.server`) and per-route body limits (:mod:`.bodylimit`), the API description (:mod:`.openapi`), ``/metrics`` (:mod:`.prometheus`)
and the page itself (``static/``: HTML, CSS, JavaScript; no build step). May import the base
modules, ``model``, ``processing``, ``store`` and ``registry``; never ``service`` or ``cli``.
"""
