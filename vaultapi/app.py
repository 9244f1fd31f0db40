"""The Sanic app: blueprints, the database pool, token keys and error handling.

`create_app` builds an app and touches nothing until the server starts: the pool and the
token keys are set up in before_server_start and released in after_server_stop. Each app gets
a unique name, so several can live in one process (tests run two replicas side by side).
"""

from __future__ import annotations

import asyncio
import itertools
import logging

from sanic import Sanic

from core.config import Config, redact_dsn
from core.negotiate import NEGOTIATE_PATH, negotiate
from core.keyring import REFRESH_INTERVAL, KeyRing
from core.server_secrets import PRELOGIN, load_server_secret
from vaultapi import cors, headers
from vaultapi.database import open_pool
from vaultapi.errors import handle_error
from vaultapi.routes import (
    accounts,
    ciphers,
    collections,
    devices,
    folders,
    identity,
    members,
    organizations,
    settings,
    sync,
)
from vaultapi.routes import config as server_config

__all__ = ["MAX_BODY_SIZE", "REGISTRATION_TOKEN_LIFETIME", "create_app", "serve"]

log = logging.getLogger(__name__)

#: the largest request body accepted (a big import fits); larger ones get a 413
MAX_BODY_SIZE = 32 * 1024 * 1024
#: seconds a registration (email verification) token stays valid
REGISTRATION_TOKEN_LIFETIME = 3600

_app_numbers = itertools.count(1)


def create_app(config: Config, database_url: str | None = None, *, max_body_size: int = MAX_BODY_SIZE,
               key_refresh_interval: float = REFRESH_INTERVAL) -> Sanic:
    database_url = database_url or config.database_url
    if not database_url:
        raise ValueError("create_app needs a database URL")
    app = Sanic(f"pgwarden_api_{next(_app_numbers)}", configure_logging=False)
    app.config.REQUEST_MAX_SIZE = max_body_size
    app.config.FALLBACK_ERROR_FORMAT = "json"
    app.config.MOTD = False
    # touchup rewrites Sanic's own methods per app, which breaks a second app in one process
    app.config.TOUCHUP = False
    app.ctx.config = config
    for area in (identity, accounts, devices, sync, ciphers, folders, settings, server_config, organizations, members,
                 collections):
        app.blueprint(area.bp)
    app.add_route(negotiate, NEGOTIATE_PATH, methods=["POST"])
    app.error_handler.add(Exception, handle_error)
    cors.install(app)
    headers.install(app)

    @app.before_server_start
    async def open_database(app: Sanic) -> None:
        app.ctx.pool = await open_pool(database_url)
        keys = KeyRing(app.ctx.pool, passphrase=config.signing_key_secret(), signs=True,
                       refresh_interval=key_refresh_interval)
        await keys.load()
        app.ctx.keys = keys
        app.ctx.issuer = keys.issuer(config.token_issuer, config.access_token_lifetime)
        app.ctx.verifier = keys.verifier(config.token_issuer)
        register_issuer = f"{config.domain.rstrip('/')}|register"
        app.ctx.registration_issuer = keys.issuer(register_issuer, REGISTRATION_TOKEN_LIFETIME)
        app.ctx.registration_verifier = keys.verifier(register_issuer)
        app.ctx.key_refresh = asyncio.create_task(keys.keep_fresh(), name="api-keys")
        app.ctx.prelogin_secret = await load_server_secret(app.ctx.pool, PRELOGIN)

    @app.after_server_stop
    async def close_database(app: Sanic) -> None:
        app.ctx.key_refresh.cancel()
        await asyncio.gather(app.ctx.key_refresh, return_exceptions=True)
        await app.ctx.pool.close()

    return app


def serve(config: Config) -> int:
    """Run the API in this process until interrupted (`pgwarden api`); it prepares the database first."""
    from core.database import opened, prepare

    with opened(config) as database_url:
        # a signing key it cannot open stops it here, with the reason, before any port opens
        prepare(database_url, config.signing_key_secret(), unlock=True)
        app = create_app(config, database_url)
        log.info("API listening on http://%s:%d, database %s",
                 config.api_address, config.api_port, redact_dsn(database_url))
        app.run(host=config.api_address, port=config.api_port, single_process=True,
                access_log=False, motd=False)
    return 0
