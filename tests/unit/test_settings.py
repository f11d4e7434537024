from __future__ import annotations

import pytest

from app.settings import DEV_JWT_SECRET, SettingsError, load_settings


def settings_from(**env: str):  # type: ignore[no-untyped-def]
    return load_settings({f"SAV_{k.upper()}": v for k, v in env.items()}, dotenv=None)


def test_defaults_are_the_embedded_ones_with_a_loud_warning() -> None:
    settings = settings_from()
    assert settings.database_url == "sqlite+aiosqlite:///./sav.db"
    assert settings.channels_url == "memory://"
    assert settings.run_worker is True
    assert settings.jwt_secret == DEV_JWT_SECRET
    assert any("SAV_JWT_SECRET" in warning for warning in settings.warnings)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"database_url": "mysql://x/y"}, "SAV_DATABASE_URL"),
        ({"database_url": "postgresql+psycopg:///nohost"}, "names no host"),
        ({"env": "production"}, "SAV_JWT_SECRET must be set in production"),
        ({"jwt_secret": "short"}, "at least 32"),
        ({"run_worker": "maybe"}, "SAV_RUN_WORKER"),
        ({"seller_response_seconds": "two days"}, "SAV_SELLER_RESPONSE_SECONDS"),
        ({"seller_response_seconds": "-5"}, "negative"),
        ({"worker_poll_seconds": "0"}, "greater than zero"),
        ({"channels_url": "kafka://x"}, "SAV_CHANNELS_URL"),
        ({"jwt_algorithm": "RS256"}, "SAV_JWT_PUBLIC_KEY_FILE"),
        ({"jwt_algorithm": "RS256", "jwt_public_key_file": "/nonexistent.pem"}, "does not exist"),
        ({"stripe_api_base": "localhost:12111"}, "SAV_STRIPE_API_BASE"),
        ({"env": "staging"}, "SAV_ENV"),
        ({"metrics_token": "short"}, "SAV_METRICS_TOKEN"),
        ({"webhooks_allow_private": "perhaps"}, "SAV_WEBHOOKS_ALLOW_PRIVATE"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        settings_from(**env)


def test_password_is_not_echoed_in_errors() -> None:
    with pytest.raises(SettingsError) as info:
        settings_from(database_url="mysql://user:hunter2@db/x")
    assert "hunter2" not in str(info.value)


def test_dotenv_is_read_and_environment_wins(tmp_path) -> None:  # type: ignore[no-untyped-def]
    dotenv = tmp_path / ".env"
    dotenv.write_text('# comment\nSAV_RETURN_SECONDS=60\nexport SAV_LOG_LEVEL="debug"\nSAV_RUN_WORKER=false\n')
    settings = load_settings({"SAV_RUN_WORKER": "true"}, dotenv=dotenv)
    assert settings.return_seconds == 60
    assert settings.log_level == "debug"
    assert settings.run_worker is True


def test_a_bad_setting_stops_the_cli_with_one_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os
    import subprocess
    import sys

    env = {**os.environ, "SAV_DATABASE_URL": "oracle://nope"}
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "token", "--role", "agent", "--sub", "a"],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().startswith("sav: configuration error: SAV_DATABASE_URL")
    assert "Traceback" not in result.stderr


def test_metrics_are_off_and_webhooks_public_only_by_default() -> None:
    settings = settings_from()
    assert (settings.metrics_token, settings.webhooks_allow_private) == ("", False)


def test_private_webhook_destinations_in_production_are_announced() -> None:
    settings = settings_from(env="production", jwt_secret="p" * 40, webhooks_allow_private="true")
    assert any("SAV_WEBHOOKS_ALLOW_PRIVATE" in warning for warning in settings.warnings)
