"""Local fakes of each provider's API, served over real HTTP for the demo and the tests.

One FastAPI app (``sandbox.app:create_app``, given the fakes by
``channels.registry.sandbox_app``) mounts one router per provider. Every
call is recorded for inspection (``GET /_sandbox/calls``) and any provider can be told to
fail for a while (``POST /_sandbox/fail``): HTTP 500, 429 with a retry time, or a timeout.
"""
