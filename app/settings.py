"""Settings: one frozen object read from ``SAV_*`` environment variables (and a ``.env`` file).

Read once through :func:`get_settings`; tests build their own with :func:`load_settings`.
A bad value stops the process with one readable line (:class:`SettingsError`), never a traceback.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

DEV_JWT_SECRET = "sav-development-secret-do-not-use-in-production"  # noqa: S105 - a known, loudly-warned dev value

Environment = Literal["development", "production", "test"]


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable and what is expected."""


@dataclass(frozen=True, slots=True)
class Settings:
    env: Environment = "development"
    database_url: str = "sqlite+aiosqlite:///./sav.db"
    database_pool_size: int = 10
    jwt_secret: str = DEV_JWT_SECRET
    jwt_algorithm: Literal["HS256", "RS256"] = "HS256"
    jwt_public_key_file: str = ""
    jwt_jwks_file: str = ""
    jwt_audience: str = ""
    channels_url: str = "memory://"
    run_worker: bool = True
    stripe_api_key: str = ""
    stripe_api_base: str = ""
    stripe_webhook_secret: str = ""
    attachments_dir: str = "./attachments"
    seller_response_seconds: int = 172_800
    buyer_response_seconds: int = 259_200
    return_seconds: int = 1_209_600
    reopen_window_seconds: int = 1_209_600
    escrow_hold_seconds: int = 1_209_600
    worker_poll_seconds: float = 1.0
    # Disputes: an order at or above this amount (minor units) makes its dispute critical.
    dispute_critical_amount: int = 50_000
    # Operator SLA (docs/api.md, The operator queue): first response and resolution, per priority.
    sla_critical_first_response_seconds: int = 3_600
    sla_critical_resolution_seconds: int = 86_400
    sla_standard_first_response_seconds: int = 14_400
    sla_standard_resolution_seconds: int = 172_800
    # An escalated dispute nobody claimed for this long is flagged overdue in the queue.
    queue_overdue_seconds: int = 900
    # Refunds: the most an agent (level 1) may grant from the operator's funds, per refund (minor units).
    agent_goodwill_limit: int = 5_000
    # A worker that took a refund to pay owns it this long; if it dies, another takes it over after that
    # (and asks the provider again with the same idempotency key).
    refund_lease_seconds: float = 60.0
    # The same for a payout's transfer and a transfer reversal the worker is making.
    payout_lease_seconds: float = 60.0
    # How long a promo code granted as compensation stays valid.
    promo_valid_seconds: int = 90 * 86_400
    # Reconciliation: provider movements listed this long before or after a period still absorb the
    # ledger's movements booked inside it (a capture booked at 23:59:59, listed at 00:00:01).
    reconciliation_edge_seconds: int = 3_600
    # Where uploaded exports are kept while they are reconciled; empty: <attachments_dir>/reconciliations.
    reconciliation_dir: str = ""
    # Events a WebSocket client may fall behind by before it is closed (4429) and must resume.
    ws_queue_size: int = 1_000
    log_level: str = "INFO"
    log_json: bool = True
    # Bearer token Prometheus sends to GET /metrics; empty: /metrics answers 404.
    metrics_token: str = ""
    # Outbound webhooks to loopback, private, link-local... addresses (a local receiver in development).
    webhooks_allow_private: bool = False
    # Filled in by load_settings, not by an environment variable.
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def reconciliation_files(self) -> str:
        return self.reconciliation_dir or str(Path(self.attachments_dir) / "reconciliations")

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _read_dotenv(path: Path) -> dict[str, str]:
    """Minimal ``KEY=VALUE`` reader: comments, blank lines, optional quotes, optional ``export``."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def _convert(name: str, raw: str, kind: str) -> object:
    var = f"SAV_{name.upper()}"
    if kind == "bool":
        lowered = raw.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise SettingsError(f"{var}={raw!r} is not a boolean (use true or false)")
    if kind == "int":
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{var}={raw!r} is not a whole number") from None
        if value < 0:
            raise SettingsError(f"{var}={raw!r} must not be negative")
        return value
    if kind == "float":
        try:
            number = float(raw)
        except ValueError:
            raise SettingsError(f"{var}={raw!r} is not a number") from None
        if number <= 0:
            raise SettingsError(f"{var}={raw!r} must be greater than zero")
        return number
    return raw


def _kind_of(default: object) -> str:
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, int):
        return "int"
    if isinstance(default, float):
        return "float"
    return "str"


def load_settings(environ: dict[str, str] | None = None, dotenv: Path | None = Path(".env")) -> Settings:
    """Build and validate settings from ``environ`` (default: the process environment) over ``.env``."""
    source: dict[str, str] = {}
    if dotenv is not None:
        source.update(_read_dotenv(dotenv))
    source.update(os.environ if environ is None else environ)

    values: dict[str, object] = {}
    for f in fields(Settings):
        if f.name == "warnings":
            continue
        raw = source.get(f"SAV_{f.name.upper()}")
        if raw is None or raw == "":
            continue
        values[f.name] = _convert(f.name, raw, _kind_of(f.default))

    settings = Settings(**values)  # type: ignore[arg-type]
    return _validate(settings)


def _validate(settings: Settings) -> Settings:
    warnings: list[str] = []
    if settings.env not in ("development", "production", "test"):
        raise SettingsError(f"SAV_ENV={settings.env!r} must be one of development, production, test")

    url = settings.database_url
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in ("sqlite+aiosqlite", "postgresql+psycopg"):
        raise SettingsError(
            f"SAV_DATABASE_URL={_redact(url)!r} is not supported: use sqlite+aiosqlite:///./sav.db "
            "or postgresql+psycopg://user:password@host:5432/dbname"
        )
    if scheme == "postgresql+psycopg" and not urlsplit(url).hostname and "host=" not in url:
        raise SettingsError(f"SAV_DATABASE_URL={_redact(url)!r} names no host")

    if settings.jwt_algorithm not in ("HS256", "RS256"):
        raise SettingsError(f"SAV_JWT_ALGORITHM={settings.jwt_algorithm!r} must be HS256 or RS256")
    if settings.jwt_algorithm == "RS256":
        if not (settings.jwt_public_key_file or settings.jwt_jwks_file):
            raise SettingsError("SAV_JWT_ALGORITHM=RS256 needs SAV_JWT_PUBLIC_KEY_FILE or SAV_JWT_JWKS_FILE")
        for var, path in (
            ("SAV_JWT_PUBLIC_KEY_FILE", settings.jwt_public_key_file),
            ("SAV_JWT_JWKS_FILE", settings.jwt_jwks_file),
        ):
            if path and not Path(path).is_file():
                raise SettingsError(f"{var}={path!r} does not exist")
    elif settings.jwt_secret == DEV_JWT_SECRET:
        if settings.env == "production":
            raise SettingsError("SAV_JWT_SECRET must be set in production (SAV_ENV=production)")
        warnings.append(
            "SAV_JWT_SECRET is not set: using the PUBLIC development secret. Anyone can mint tokens. "
            "Set SAV_JWT_SECRET before exposing this service."
        )
    elif len(settings.jwt_secret) < 32:
        raise SettingsError("SAV_JWT_SECRET must be at least 32 characters long")

    channels = settings.channels_url.split("://", 1)[0]
    if channels not in ("memory", "redis", "rediss", "postgresql", "postgres"):
        raise SettingsError(
            f"SAV_CHANNELS_URL={settings.channels_url!r} must start with memory://, redis:// or postgresql://"
        )
    if settings.stripe_api_base and not settings.stripe_api_base.startswith(("http://", "https://")):
        raise SettingsError(f"SAV_STRIPE_API_BASE={settings.stripe_api_base!r} must be an http(s) URL")
    if settings.env == "production" and settings.stripe_api_key and not settings.stripe_webhook_secret:
        raise SettingsError("SAV_STRIPE_WEBHOOK_SECRET must be set in production when SAV_STRIPE_API_KEY is")
    for name in ("seller_response", "buyer_response", "return", "reopen_window", "escrow_hold"):
        if getattr(settings, f"{name}_seconds") < 1:
            raise SettingsError(f"SAV_{name.upper()}_SECONDS must be at least 1 second")
    if settings.ws_queue_size < 1:
        raise SettingsError("SAV_WS_QUEUE_SIZE must be at least 1")
    if settings.metrics_token and len(settings.metrics_token) < 16:
        raise SettingsError("SAV_METRICS_TOKEN must be at least 16 characters long")
    if settings.webhooks_allow_private and settings.env == "production":
        warnings.append(
            "SAV_WEBHOOKS_ALLOW_PRIVATE is on in production: admins can make the service call internal addresses."
        )
    if settings.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise SettingsError(f"SAV_LOG_LEVEL={settings.log_level!r} must be DEBUG, INFO, WARNING or ERROR")

    object.__setattr__(settings, "warnings", tuple(warnings))
    return settings


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()


def get_settings_or_exit() -> Settings:
    """For entry points: a bad setting prints one line and exits with status 2."""
    try:
        return get_settings()
    except SettingsError as exc:
        print(f"sav: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
