"""Settings: read from the environment, validated, and documented in the README."""

from __future__ import annotations

import pytest

from core.config import Config, ConfigError, redact_dsn
from tests.conftest import ROOT


def test_defaults_match_the_seed_setup() -> None:
    config = Config.from_env({})
    assert (config.api_port, config.websocket_port, config.websocket_enabled) == (80, 3012, True)
    assert config.database_url is None and config.signups_allowed is True


def test_values_are_cast_from_text() -> None:
    config = Config.from_env(
        {"WEBSOCKET_ENABLED": "false", "API_PORT": "8080", "SIGNUPS_ALLOWED": "0", "DOMAIN": "https://v.example/"}
    )
    assert (config.websocket_enabled, config.api_port, config.signups_allowed) == (False, 8080, False)
    assert config.token_issuer == "https://v.example|login"


def test_every_bad_value_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        Config.from_env({"API_PORT": "eighty", "WEBSOCKET_PORT": "70000", "WEBSOCKET_ENABLED": "maybe"})
    message = str(caught.value)
    assert "API_PORT" in message and "WEBSOCKET_PORT" in message and "WEBSOCKET_ENABLED" in message


def test_domain_origin_is_what_a_browser_sends_as_origin() -> None:
    assert Config(domain="https://Vault.Example.com:443/bitwarden/").domain_origin == "https://vault.example.com"
    assert Config(domain="http://localhost:8080").domain_origin == "http://localhost:8080"
    assert Config().domain_origin == "http://localhost"


def test_cors_allowed_origins_are_a_list_of_exact_origins() -> None:
    config = Config.from_env({"CORS_ALLOWED_ORIGINS": "https://Web.Example.com, https://other.example:8443/"})
    assert config.cors_allowed_origins == ("https://web.example.com", "https://other.example:8443")
    assert Config.from_env({}).cors_allowed_origins == ()
    for bad in ("*", "null", "web.example.com", "https://web.example.com/vault", "https://a.example?x=1"):
        with pytest.raises(ConfigError) as caught:
            Config.from_env({"CORS_ALLOWED_ORIGINS": bad})
        assert "CORS_ALLOWED_ORIGINS" in str(caught.value), bad


def test_metrics_token_is_off_by_default_and_kept_out_of_reprs() -> None:
    assert Config.from_env({}).metrics_token is None
    token = "0123456789abcdef0123456789abcdef"
    config = Config.from_env({"METRICS_TOKEN": token})
    assert config.metrics_token == token
    assert token not in repr(config)
    with pytest.raises(ConfigError) as caught:
        Config.from_env({"METRICS_TOKEN": "short"})
    assert "METRICS_TOKEN" in str(caught.value)


def test_hub_limits_and_their_defaults() -> None:
    config = Config.from_env({})
    assert config.hub_handshake_timeout == 5
    assert config.hub_send_buffer == 65536
    assert (config.hub_max_connections, config.hub_max_anonymous_connections) == (10000, 1000)
    assert (config.hub_max_connections_per_user, config.hub_max_connections_per_ip) == (64, 256)
    config = Config.from_env({"HUB_SEND_BUFFER": "1048576", "HUB_MAX_ANONYMOUS_CONNECTIONS": "10"})
    assert (config.hub_send_buffer, config.hub_max_anonymous_connections) == (1048576, 10)
    # a buffer smaller than a few notifications would close every connection at once
    with pytest.raises(ConfigError) as caught:
        Config.from_env({"HUB_SEND_BUFFER": "512"})
    assert "HUB_SEND_BUFFER" in str(caught.value)


def test_readme_documents_every_setting_with_its_default() -> None:
    readme = (ROOT / "README.md").read_text()
    for name, default, _ in Config.reference():
        shown = f"`{default}`" if default else "(unset)"
        assert f"| `{name}` | {shown} |" in readme, f"README lacks {name} (default {default})"


def test_redact_dsn_hides_the_password_only() -> None:
    assert redact_dsn("postgresql://app:s3cret@db:5432/vault") == "postgresql://app:***@db:5432/vault"
    assert redact_dsn("postgresql://app@db/vault") == "postgresql://app@db/vault"
    assert redact_dsn("postgresql://app:s3cret@db1:5432,db2:5432/vault?target_session_attrs=read-write") == (
        "postgresql://app:***@db1:5432,db2:5432/vault?target_session_attrs=read-write")


def test_signing_key_passphrase_comes_from_the_environment_or_a_file(tmp_path) -> None:
    assert Config.from_env({}).signing_key_secret() is None
    assert Config.from_env({"SIGNING_KEY_PASSPHRASE": "s3cret"}).signing_key_secret() == "s3cret"
    secret = tmp_path / "passphrase"
    secret.write_text("from a file\n")
    assert Config.from_env({"SIGNING_KEY_PASSPHRASE_FILE": str(secret)}).signing_key_secret() == "from a file"


def test_signing_key_passphrase_stays_out_of_reprs() -> None:
    config = Config.from_env({"SIGNING_KEY_PASSPHRASE": "s3cret"})
    assert "s3cret" not in repr(config) and "s3cret" not in str(config.signing_key_passphrase)


def test_signing_key_passphrase_settings_that_cannot_work_are_reported(tmp_path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    for environ, expected in [
        ({"SIGNING_KEY_PASSPHRASE": "a", "SIGNING_KEY_PASSPHRASE_FILE": str(empty)}, "not both"),
        ({"SIGNING_KEY_PASSPHRASE_FILE": str(tmp_path / "missing")}, "SIGNING_KEY_PASSPHRASE_FILE"),
        ({"SIGNING_KEY_PASSPHRASE_FILE": str(empty)}, "empty"),
    ]:
        with pytest.raises(ConfigError, match=expected):
            Config.from_env(environ)
