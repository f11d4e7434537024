"""The application: ``create_app(settings)`` wires everything; ``app`` is what uvicorn serves."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

from advanced_alchemy.extensions.litestar import AsyncSessionConfig, SQLAlchemyAsyncConfig, SQLAlchemyPlugin
from litestar import Litestar
from litestar.channels import ChannelsPlugin
from litestar.channels.backends.base import ChannelsBackend
from litestar.channels.backends.memory import MemoryChannelsBackend
from litestar.channels.backends.redis import RedisChannelsPubSubBackend
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.prometheus import PrometheusConfig
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app import db
from app.auth import TokenDecoder, auth_middleware
from app.disputes import milestones, promo_notice
from app.disputes import resolution as disputes
from app.disputes.controller import DisputeController, QueueController
from app.edge import SavRequest, edge_middleware, security_headers
from app.errors import handle_exception
from app.events.hub import CHANNEL, Hub
from app.events.socket import events_socket
from app.health import HealthController
from app.metrics import MetricsController
from app.observability import configure_logging, request_id_middleware
from app.openapi import DescribedJson, LocalSwagger, assets_router
from app.orders.controller import OrderController
from app.payouts import refund_events
from app.payouts.controller import (
    BuyerCreditController,
    PromoCodeController,
    ProviderEventController,
    RefundController,
    StripeWebhookController,
)
from app.payouts.gateway import PaymentGateway
from app.payouts.models import Refund
from app.payouts.payout_controller import PayoutController, SellerBalanceController
from app.payouts.reactions import Reactions
from app.payouts.stripe_escrow import StripeEscrow
from app.reconciliation.controller import ReconciliationController
from app.reports.controller import ReportController, SellerMetricsController
from app.sellers.controller import SellerController
from app.settings import Settings, get_settings_or_exit
from app.threads.controller import AttachmentController, MacroController, ThreadController
from app.threads.messages import ThreadReactions
from app.threads.storage import LocalDiskStorage
from app.webhooks.controller import WebhookEndpointController
from app.worker import Worker, all_jobs

logger = logging.getLogger("sav")


def create_app(settings: Settings | None = None, *, configure_logs: bool = True) -> Litestar:
    settings = settings or get_settings_or_exit()
    if configure_logs:
        configure_logging(settings.log_level, as_json=settings.log_json)
    engine = db.create_engine(settings.database_url, pool_size=settings.database_pool_size)
    # The KPI reports run their statements at once on a small pool of their own (PostgreSQL: at most 4
    # connections per process, never the request's); SQLite runs them in turn on the request's session.
    reports_reader = None if engine.dialect.name == "sqlite" else db.create_engine(settings.database_url, pool_size=2)
    storage = LocalDiskStorage(settings.attachments_dir)

    channels = ChannelsPlugin(backend=channels_backend(settings), channels=[CHANNEL])
    reactions = money_reactions(settings)
    # A message of the shop or of operator staff in a dispute's thread may be its first response (KPIs).
    thread_reactions = ThreadReactions(dispute_message=milestones.message_posted)
    worker = build_worker(settings, engine, reactions) if settings.run_worker else None
    hub = Hub(
        engine,
        channels,
        poll_seconds=settings.worker_poll_seconds,
        queue_size=settings.ws_queue_size,
        personalizers={refund_events.EVENT_TYPE: refund_events.as_seen_by},
    )

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        for warning in settings.warnings:
            logger.warning(warning)
        try:
            await db.ensure_schema_current(engine)
            async with channels:
                await hub.start()
                if worker is not None:
                    worker.start()
                try:
                    yield
                finally:
                    if worker is not None:
                        await worker.stop()
                    await hub.stop()
        finally:
            # The plugin does not dispose an engine it was handed; without this, pools leak across apps.
            await engine.dispose()
            if reports_reader is not None:
                await reports_reader.dispose()

    sqlalchemy = SQLAlchemyPlugin(
        config=SQLAlchemyAsyncConfig(
            engine_instance=engine,
            # Handlers get `db_session` from db.request_transaction, which commits before the response
            # starts; the plugin's default before-send handler only closes the session (rolling back).
            session_dependency_key=db.PLUGIN_SESSION_KEY,
            before_send_handler=None,
            session_config=AsyncSessionConfig(expire_on_commit=False),
            set_default_exception_handler=False,
            enable_touch_updated_timestamp_listener=False,
        )
    )
    prometheus = PrometheusConfig(app_name="sav", prefix="sav", group_path=True, exclude=["^/metrics$"])

    app = Litestar(
        route_handlers=[
            HealthController,
            MetricsController,
            SellerController,
            OrderController,
            ThreadController,
            AttachmentController,
            MacroController,
            DisputeController,
            QueueController,
            WebhookEndpointController,
            RefundController,
            BuyerCreditController,
            PromoCodeController,
            StripeWebhookController,
            ProviderEventController,
            PayoutController,
            SellerBalanceController,
            ReconciliationController,
            ReportController,
            SellerMetricsController,
            events_socket,
            assets_router(),
        ],
        dependencies={
            "db_session": Provide(db.request_transaction),
            "settings": Provide(lambda: settings, use_cache=True, sync_to_thread=False),
            "attachment_storage": Provide(lambda: storage, use_cache=True, sync_to_thread=False),
            "reactions": Provide(lambda: reactions, use_cache=True, sync_to_thread=False),
            "thread_reactions": Provide(lambda: thread_reactions, use_cache=True, sync_to_thread=False),
        },
        middleware=[request_id_middleware, prometheus.middleware, auth_middleware, edge_middleware],
        request_class=SavRequest,
        before_send=[security_headers],
        plugins=[sqlalchemy],
        exception_handlers={Exception: handle_exception},
        lifespan=[lifespan],
        openapi_config=OpenAPIConfig(
            title="SAV — tripartite after-sales backend",
            version="0.1.0",
            path="/schema",
            render_plugins=[LocalSwagger(), DescribedJson()],
            components=Components(
                security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT")}
            ),
            security=[{"bearer": []}],
        ),
        debug=False,
        logging_config=None,  # configure_logging owns the handlers (JSON lines on stderr)
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.reports_reader = reports_reader
    app.state.token_decoder = TokenDecoder(settings)
    app.state.hub = hub
    app.state.worker = worker
    app.state.reactions = reactions
    return app


def money_reactions(settings: Settings) -> Reactions:
    """What money movements make other domains do. Payouts imports neither disputes nor threads; these
    callbacks, passed to the refunds controller and the worker, are the only way it reaches them."""

    async def refund_settled(session: AsyncSession, refund: Refund, now: datetime) -> None:
        await disputes.refund_settled(session, refund, now, settings)

    return Reactions(
        committed=disputes.committed_on_order,  # offers and accepted resolutions count against the limits
        refund_settled=refund_settled,  # a settled refund resolves its dispute, or sends it back
        promo_issued=promo_notice.tell_buyer,  # a dispute's promo code is posted to its buyer
    )


def payment_gateway(settings: Settings) -> PaymentGateway | None:
    """The payment provider's adapter, when one is configured (``SAV_STRIPE_API_KEY``). Without it refunds
    are granted and stay pending until a worker with a key runs."""
    if not settings.stripe_api_key:
        return None
    return StripeEscrow(api_key=settings.stripe_api_key, api_base=settings.stripe_api_base)


def build_worker(settings: Settings, engine: AsyncEngine, reactions: Reactions | None = None) -> Worker:
    """The background worker with its payment gateway and every reaction it runs: the one built inside
    the server (``SAV_RUN_WORKER``) and the one ``sav worker`` runs are this one."""
    reactions = reactions or money_reactions(settings)
    if reactions.refund_settled is None:
        raise ValueError("a worker needs the refund_settled reaction (money_reactions)")
    jobs = all_jobs(settings, gateway=payment_gateway(settings), on_refund_settled=reactions.refund_settled)
    return Worker(engine, poll_seconds=settings.worker_poll_seconds, jobs=jobs)


def channels_backend(settings: Settings) -> ChannelsBackend:
    """The broker that tells every process "new events were committed" (SAV_CHANNELS_URL)."""
    url = settings.channels_url
    if url.startswith(("redis://", "rediss://")):
        from redis.asyncio import Redis

        return RedisChannelsPubSubBackend(redis=Redis.from_url(url))
    if url.startswith(("postgresql://", "postgres://")):
        from litestar.channels.backends.psycopg import PsycoPgChannelsBackend

        return PsycoPgChannelsBackend(pg_dsn=url)
    return MemoryChannelsBackend()


def __getattr__(name: str) -> Litestar:
    # `app.main:app` is built on first access, so importing this module (tests, alembic) has no side effects.
    if name == "app":
        application = create_app()
        globals()["app"] = application
        return application
    raise AttributeError(name)
