import pytest

from course_management.config import ConfigError, load_settings

VALID = {
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092",
    "SCHEMA_REGISTRY_URL": "http://127.0.0.1:8081",
    "DATABASE_URL": "postgresql://u:p@127.0.0.1:5432/db",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "JWT_SECRET": "x" * 32,
}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for key in [*VALID, "SEARCH_URL", "JWT_PUBLIC_KEY", "HTTP_PORT"]:
        monkeypatch.delenv(key, raising=False)
    for key, value in VALID.items():
        monkeypatch.setenv(key, value)
    return monkeypatch


def test_valid_environment_loads_with_contract_defaults(env: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert settings.http_port == 8080
    assert settings.search_url is None
    assert settings.kafka_bootstrap_servers == "127.0.0.1:9092"


def test_flags_override_the_environment(env: pytest.MonkeyPatch) -> None:
    assert load_settings(http_port=9000).http_port == 9000


@pytest.mark.parametrize(
    ("name", "value", "named"),
    [
        ("KAFKA_BOOTSTRAP_SERVERS", "no-port", "KAFKA_BOOTSTRAP_SERVERS"),
        ("DATABASE_URL", "mysql://x", "DATABASE_URL"),
        ("REDIS_URL", "http://x", "REDIS_URL"),
        ("HTTP_PORT", "70000", "HTTP_PORT"),
        ("HTTP_PORT", "eighty", "HTTP_PORT"),
        ("SEARCH_URL", "ftp://x", "SEARCH_URL"),
    ],
)
def test_a_malformed_setting_is_named_in_one_line(
    env: pytest.MonkeyPatch, name: str, value: str, named: str
) -> None:
    env.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert named in message
    assert "\n" not in message


def test_a_missing_setting_is_named(env: pytest.MonkeyPatch) -> None:
    env.delenv("DATABASE_URL")
    with pytest.raises(ConfigError, match="DATABASE_URL is required"):
        load_settings()


def test_a_jwt_key_is_required_and_only_one(env: pytest.MonkeyPatch) -> None:
    env.delenv("JWT_SECRET")
    with pytest.raises(ConfigError, match="JWT_SECRET, JWT_PUBLIC_KEY or JWT_JWKS_URL"):
        load_settings()
    env.setenv("JWT_JWKS_URL", "https://id.moocflix.test/.well-known/jwks.json")
    assert load_settings().jwt_jwks_url
    env.setenv("JWT_SECRET", "s" * 40)
    with pytest.raises(ConfigError, match="only one"):
        load_settings()
    env.delenv("JWT_SECRET")
    env.setenv("JWT_JWKS_URL", "file:///etc/keys")
    with pytest.raises(ConfigError, match="URL"):
        load_settings()


def test_a_short_jwt_secret_is_refused(env: pytest.MonkeyPatch) -> None:
    env.setenv("JWT_SECRET", "short")
    with pytest.raises(ConfigError, match="at least 32"):
        load_settings()
