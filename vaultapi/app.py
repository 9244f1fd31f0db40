"""The Sanic app: blueprints, the database pool, token keys, body limits and error handling.

`create_app` builds an app and touches nothing until the server starts: the pool and the
token keys are set up in before_server_start and released in after_server_stop. Each app gets
a unique name, so several can live in one process (tests run two replicas side by side).

A body is read only after the caller's token is checked, on the routes that want one, and only
up to the route's limit (vaultapi.body_limits): Sanic refuses a larger Content-Length at once,
and a chunked body as soon as its chunks pass the limit, with a 413 in the route's error shape.
It is dropped once the request is answered, however long the request object itself is kept.

On SIGTERM the server stops listening and answers the requests in hand before it exits (a
rolling restart drains; Sanic's GRACEFUL_SHUTDOWN_TIMEOUT, 15 s, bounds the wait).
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging

from sanic import Request, Sanic
from sanic.request import RequestParameters
from sanic.server.protocols.http_protocol import HttpProtocol

from core import access_log
from core.allocator import keep_large_blocks_returnable, trim_periodically
from core.config import Config, redact_dsn
from core.first_byte import FirstByteDeadline, wait_for_requests
from core.negotiate import NEGOTIATE_PATH, negotiate
from core.request import QuietRequest
from core.keyring import REFRESH_INTERVAL, KeyRing
from core.server_secrets import PRELOGIN, load_server_secret
from core.tokens import VerifiedTokens
from vaultapi import body_limits, cors, downloads, headers, housekeeping
from vaultapi.auth import caller_of, needs_caller
from vaultapi.database import open_pool
from vaultapi.storage import open_store
from vaultapi.errors import ApiError, handle_error
from vaultapi.limiter import Limiter
from vaultapi.limits import import_attempt, paces_imports
from vaultapi.mail.sender import MailSender
from vaultapi.purpose_tokens import PurposeTokens
from vaultapi.routes import (
    account_mail,
    accounts,
    attachments,
    auth_requests,
    ciphers,
    collections,
    devices,
    folders,
    identity,
    members,
    organizations,
    sends,
    settings,
    sync,
    two_factor,
)
from vaultapi.routes import files as file_routes
from vaultapi.routes import config as server_config

__all__ = ["MAX_BODY_SIZE", "REGISTRATION_TOKEN_LIFETIME", "LimitedRequest", "create_app", "serve"]

log = logging.getLogger(__name__)

#: the largest request body any route accepts (the import's); each route has its own, smaller or equal
MAX_BODY_SIZE = body_limits.IMPORT_BODY
#: seconds a registration (email verification) token stays valid
REGISTRATION_TOKEN_LIFETIME = 3600
#: seconds a Send access token (the send_access grant's) stays valid: the clients use it at once
SEND_ACCESS_TOKEN_LIFETIME = 300

_app_numbers = itertools.count(1)


class ApiProtocol(FirstByteDeadline, HttpProtocol):
    """Sanic's HTTP protocol; a connection that sends nothing is closed soon (core/first_byte.py)."""

    __slots__ = ()


class LimitedRequest(QuietRequest):
    """A request whose body is read only from a known caller and up to its route's limit, and
    whose form is bounded."""

    async def receive_body(self) -> None:
        if self.stream is not None and self.route is not None and not self.body:
            if needs_caller(self.route.handler) and getattr(self.ctx, "caller", None) is None:
                # as ASP.NET authenticates before it binds a body: a stranger's body is never read
                self.ctx.caller = await caller_of(self)
            if paces_imports(self.route.handler):
                # refused before the megabytes are read
                await import_attempt(self)
            # checked by Sanic against Content-Length before a byte is read, and per chunk
            self.stream.request_max_size = min(body_limits.body_limit(self.route.path), self.app.ctx.max_body_size)
        await super().receive_body()

    def get_form(self, keep_blank_values: bool = False) -> RequestParameters | None:
        # counted before parsing: a form of thousands of fields is refused, not parsed
        if self.body.count(b"&") >= body_limits.MAX_FORM_FIELDS:
            raise ApiError("The form has too many fields.")
        form = super().get_form(keep_blank_values)
        if form is not None and sum(len(values) for values in form.values()) > body_limits.MAX_FORM_FIELDS:
            raise ApiError("The form has too many fields.")
        return form


def create_app(config: Config, database_url: str | None = None, *, max_body_size: int = MAX_BODY_SIZE,
               key_refresh_interval: float = REFRESH_INTERVAL, freeze_startup: bool = False) -> Sanic:
    """The API. ``freeze_startup``: once it serves, what it made to start is kept out of the
    collector's reach (for a process that serves this one app, as ``serve`` does)."""
    database_url = database_url or config.database_url
    if not database_url:
        raise ValueError("create_app needs a database URL")
    app = Sanic(f"pgwarden_api_{next(_app_numbers)}", configure_logging=False, request_class=LimitedRequest)
    app.ctx.max_body_size = max_body_size
    # what Sanic still reads of a refused request's body to keep the connection; past it, it closes
    app.config.REQUEST_MAX_SIZE = min(max_body_size, body_limits.SMALL_BODY)
    app.config.FALLBACK_ERROR_FORMAT = "json"
    wait_for_requests(app, config.request_header_timeout)
    app.ctx.protocol = ApiProtocol
    app.config.MOTD = False
    # touchup rewrites Sanic's own methods per app, which breaks a second app in one process
    app.config.TOUCHUP = False
    app.ctx.config = config
    for area in (identity, accounts, auth_requests, devices, sync, ciphers, attachments, folders, settings,
                 server_config, organizations, members, collections, two_factor, account_mail, sends, file_routes):
        app.blueprint(area.bp)
    app.add_route(negotiate, NEGOTIATE_PATH, methods=["POST"])
    app.error_handler.add(Exception, handle_error)
    cors.install(app)
    headers.install(app)
    access_log.install(app)
    app.on_response(_let_go_of_body)
    app.on_response(_close_when_stopping)
    app.on_response(_close_when_body_unread)
    app.ctx.stopping = False

    @app.before_server_start
    async def open_database(app: Sanic) -> None:
        app.ctx.pool = await open_pool(database_url)
        app.ctx.limiter = Limiter(app.ctx.pool)
        keys = KeyRing(app.ctx.pool, passphrase=config.signing_key_secret(), signs=True,
                       refresh_interval=key_refresh_interval)
        await keys.load()
        app.ctx.keys = keys
        app.ctx.issuer = keys.issuer(config.token_issuer, config.access_token_lifetime)
        # a client's next request with the same token skips its parse and RSA check (core/tokens.py)
        app.ctx.verifier = keys.verifier(config.token_issuer, verified=VerifiedTokens())
        register_issuer = f"{config.domain.rstrip('/')}|register"
        app.ctx.registration_issuer = keys.issuer(register_issuer, REGISTRATION_TOKEN_LIFETIME)
        app.ctx.registration_verifier = keys.verifier(register_issuer)
        app.ctx.purpose_tokens = PurposeTokens(keys, config.domain)
        app.ctx.key_refresh = asyncio.create_task(keys.keep_fresh(), name="api-keys")
        keep_large_blocks_returnable()
        app.ctx.trimming = asyncio.create_task(trim_periodically(), name="api-trim")
        app.ctx.prelogin_secret = await load_server_secret(app.ctx.pool, PRELOGIN)
        file_issuer = downloads.issuer_name(config.domain)
        app.ctx.file_issuer = keys.issuer(file_issuer, downloads.URL_LIFETIME)
        app.ctx.file_verifier = keys.verifier(file_issuer)
        send_issuer = f"{config.domain.rstrip('/')}|send"
        app.ctx.send_issuer = keys.issuer(send_issuer, SEND_ACCESS_TOKEN_LIFETIME)
        app.ctx.send_verifier = keys.verifier(send_issuer)
        app.ctx.store = await open_store(config, app.ctx.pool)
        app.ctx.housekeeping = asyncio.create_task(housekeeping.run(app.ctx.pool, app.ctx.store),
                                                   name="api-housekeeping")
        app.ctx.mail_sender = MailSender(app.ctx.pool, config) if config.mail_enabled else None
        if app.ctx.mail_sender:
            app.ctx.mail_sender.start()

    if freeze_startup:
        app.after_server_start(_freeze_what_lasts)

    @app.before_server_stop
    async def stop_keeping_alive(app: Sanic) -> None:
        app.ctx.stopping = True

    @app.after_server_stop
    async def close_database(app: Sanic) -> None:
        if app.ctx.mail_sender:
            await app.ctx.mail_sender.stop()
        app.ctx.key_refresh.cancel()
        app.ctx.trimming.cancel()
        app.ctx.housekeeping.cancel()
        await asyncio.gather(app.ctx.key_refresh, app.ctx.trimming, app.ctx.housekeeping, return_exceptions=True)
        await app.ctx.store.close()
        await app.ctx.pool.close()

    return app


async def _freeze_what_lasts(app: Sanic) -> None:
    """What the API made to start (its modules, routes, pool, about 100,000 objects) lives as long
    as the process. Frozen out of the collector's reach, a full collection during a burst walks
    only what the burst made: a few milliseconds, where it held the event loop for 60 ms of CPU
    (docs/performance.md, "Under attack")."""
    gc.collect()
    gc.freeze()


async def _let_go_of_body(request: Request, response: object) -> None:
    """Drop the body of a request once it is answered.

    A timer of the database driver (a new statement's cache expiry, an idle connection's check:
    five minutes each, and a cancelled one stays queued) keeps the context it was set in, and
    with it the request being served: its body, up to an import's 32 MiB, would stay as long.
    """
    request.body = b""


async def _close_when_stopping(request: Request, response: object) -> None:
    """On SIGTERM Sanic stops listening and waits for the requests in hand (a rolling restart);
    answered with Connection: close, their connections end with them, so the process exits as
    soon as the last one is answered rather than when keep-alive or the grace period runs out."""
    if request.app.ctx.stopping and request.stream is not None:
        request.stream.keep_alive = False


async def _close_when_body_unread(request: Request, response: object) -> None:
    """A request refused before its body was read to the end (an upload past its limit, say):
    Sanic would read the rest to keep the connection, or drop it if the rest is too large, after
    an answer that promised keep-alive, and a client that sends its next request on it would
    meet a closed socket. Answered with Connection: close, the client opens a new one."""
    stream = request.stream
    if stream is not None and getattr(stream, "request_body", None):
        stream.keep_alive = False


def serve(config: Config) -> int:
    """Run the API in this process until interrupted (`pgwarden api`); it prepares the database first."""
    from core.database import opened, prepare

    with opened(config) as database_url:
        # a signing key it cannot open stops it here, with the reason, before any port opens
        prepare(database_url, config.signing_key_secret(), unlock=True)
        app = create_app(config, database_url, freeze_startup=True)
        log.info("API listening on http://%s:%d, database %s",
                 config.api_address, config.api_port, redact_dsn(database_url))
        app.run(host=config.api_address, port=config.api_port, single_process=True, protocol=app.ctx.protocol,
                access_log=False, motd=False)
    return 0
