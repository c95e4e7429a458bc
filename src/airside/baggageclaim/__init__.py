"""baggageclaim: the volume server workers embed and `airside baggageclaim` runs alone.

Layers, each using only the ones below it:
``drivers/`` (mechanism, `driver.VolumeDriver`) → `filesystem` (init/live/dead state on disk) →
`repository` (volumes, parents, properties, TTL, streams: `streaming` and `tarpipe/` in, `streamout`
out) and the stream services beside it (`peer`: stream-from another server; `splice`: stream-out into
the socket; `threads`: the blocking/async plumbing) → `api` (HTTP: parse, call, map errors) → `server`
(open the repository, run uvicorn). `detect` chooses the driver at start; `routes` is the route table
`api` and `client` share.

Embedding API (see `server` and `client` for details)::

    from airside.baggageclaim.server import BackgroundServer   # create_app(settings), serve(settings)
    from airside.baggageclaim.client import VolumeClient, client_for

    with BackgroundServer(settings) as bc:                      # raises DriverUnavailable with the fix
        vc = VolumeClient(bc.url, server.resolve_token(settings))
"""
