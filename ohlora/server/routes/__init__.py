"""The API's routers, one module per concern, in the order `create_app` includes them.

pages (/, /health), users (/v1/me, /v1/users), chat (/v1/models, /v1/chat/completions), memory
(/v1/users/{user}/memories) and conversations (/v1/users/{user}/conversations). Each route
reads the shared objects (engine, store, settings, worker, accounts, conversations) from
`request.app.state` and its caller from the dependencies in `ohlora.server.auth`.
"""
