"""What the API, the hub and the `pgwarden` command share: settings, access tokens, the database.

Layers, each importing only those below it: ``db`` (schema, event contract) < ``core`` <
``vaultapi`` and ``wshub`` (which never import each other) < ``pgwarden`` (the command).
"""
