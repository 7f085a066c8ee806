"""svc_user wiring: settings, pools, domain, servicer; start and drain."""

from __future__ import annotations

from contextlib import AsyncExitStack
from datetime import timedelta

import grpc

# The other services' descriptors are loaded only so that reflection can describe them.
from elearn.analytics.v1 import analytics_service_pb2 as _analytics  # noqa: F401
from elearn.course.v1 import course_service_pb2 as _course  # noqa: F401
from elearn.live.v1 import live_service_pb2 as _live  # noqa: F401
from elearn.quiz.v1 import quiz_service_pb2 as _quiz  # noqa: F401
from elearn.user.v1 import user_service_pb2, user_service_pb2_grpc
from mesh import server
from mesh.bus import connect_bus
from mesh.cache import open_cache
from mesh.db import Database
from mesh.logs import configure_logging
from mesh.outbox import Outbox
from mesh.platform import GRPC_SERVICE_NAMES
from mesh.state import open_state
from mesh.tracing import configure_tracing
from svc_user.accounts import Accounts, registration_digest_key
from svc_user.client_address import ClientAddresses
from svc_user.login_throttle import LoginThrottle
from svc_user.models import SCHEMA, outbox
from svc_user.passwords import PasswordHashing
from svc_user.policy import POLICY
from svc_user.refresh_retry import RetryAnswers
from svc_user.servicer import UserServicer
from svc_user.sessions import Sessions
from svc_user.settings import UserSettings
from svc_user.token_purge import purge_forever
from svc_user.tokens import AccessTokens, load_private_key

SERVICE = user_service_pb2.DESCRIPTOR.services_by_name["UserService"].full_name
# The edge sends reflection here, so this service lists the whole platform for grpcurl users.
PLATFORM = GRPC_SERVICE_NAMES


async def serve() -> None:
    settings = UserSettings.load()
    settings.require(
        "database_url",
        "cache_url",
        "state_url",
        "nats_url",
        "jwt_public_key_file",
        "jwt_private_key_file",
    )
    listener = configure_logging("user", settings.instance_name, settings.log_level)
    configure_tracing("user", settings)
    try:
        async with AsyncExitStack() as stack:
            db = await stack.enter_async_context(Database.open(settings, SCHEMA))
            cache = await stack.enter_async_context(open_cache(settings))
            state = await stack.enter_async_context(open_state(settings))
            bus = await stack.enter_async_context(connect_bus(settings))
            hashing = PasswordHashing(
                time_cost=settings.argon2_time_cost,
                memory_kib=settings.argon2_memory_kib,
                parallelism=settings.argon2_parallelism,
                threads=settings.hash_threads,
                queue=settings.hash_queue,
            )
            stack.callback(hashing.close)
            events = Outbox(outbox)
            private_key = load_private_key(settings.jwt_private_key_file)
            accounts = Accounts(
                db,
                cache,
                events,
                hashing,
                settings.profile_cache_ttl_seconds,
                digest_key=registration_digest_key(private_key),
            )
            throttle = LoginThrottle(
                state,
                pair_limit=settings.login_pair_limit,
                account_limit=settings.login_account_limit,
                address_limit=settings.login_address_limit,
                window_seconds=settings.login_window_seconds,
            )
            sessions = Sessions(
                db,
                events,
                hashing,
                throttle,
                AccessTokens(private_key, settings.access_token_ttl_seconds),
                RetryAnswers(state, settings.refresh_reuse_grace_seconds),
                refresh_ttl_days=settings.refresh_token_ttl_days,
                reuse_grace_seconds=settings.refresh_reuse_grace_seconds,
            )
            addresses = ClientAddresses(settings.trusted_proxies.split(","))
            if settings.admin_email and settings.admin_password:
                await accounts.ensure_admin(settings.admin_email.lower(), settings.admin_password)
            servicer = UserServicer(accounts, sessions, addresses)

            def register(srv: grpc.aio.Server) -> None:
                user_service_pb2_grpc.add_UserServiceServicer_to_server(servicer, srv)

            async def relay() -> None:
                await events.relay(db, bus, max_attempts=settings.outbox_max_attempts)

            async def purge_refresh_tokens() -> None:
                await purge_forever(
                    db,
                    older_than=timedelta(days=settings.refresh_purge_after_days),
                    batch=settings.refresh_purge_batch,
                    interval_seconds=settings.refresh_purge_interval_seconds,
                )

            spec = server.ServiceSpec(
                name="user",
                services=[SERVICE],
                register=register,
                policy=POLICY,
                reflection_extra=PLATFORM,
                background=[relay, purge_refresh_tokens],
                bus=bus,
            )
            await server.run(settings, spec)
    finally:
        listener.stop()
