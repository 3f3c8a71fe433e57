"""An invalid gateway file fails with the path of the bad field and a readable message."""

from __future__ import annotations

from pathlib import Path

import pytest

from ferryman.config.defaults import default_gateway
from ferryman.config.loading import load_gateway, load_gateway_file, load_settings, parse_gateway
from ferryman.config.settings import Settings
from ferryman.errors import ConfigError

EXAMPLES = Path(__file__).parents[2] / "examples"

VALID = """
upstreams:
  openrouter:
    url: https://openrouter.ai/api/v1/
    provider: openrouter
    credential: pool
    timeout: {connect: 5, read: 300}
  internal:
    url: http://10.0.0.5:8080
    credential: {header: X-Api-Key, value_env: INTERNAL_KEY}
routes:
  - name: llm
    path: /v1/
    upstream: openrouter
    strip_prefix: true
    auth: [api_key]
  - path: /internal
    methods: [get, post]
    host: api.example.com
    upstream: internal
security:
  max_body_size: 2MiB
  trusted_hosts: [api.example.com, "*.example.com"]
  hsts: {max_age: 600}
  cors:
    allow_origins: [https://app.example.com]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    return path


def errors_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_gateway_file(write(tmp_path, text))
    return str(info.value)


def test_a_valid_file_is_normalised(tmp_path: Path) -> None:
    gateway = load_gateway_file(write(tmp_path, VALID))
    assert gateway.upstreams["openrouter"].url == "https://openrouter.ai/api/v1"
    assert gateway.upstreams["internal"].credential.kind == "fixed"
    llm, internal = gateway.routes
    assert llm.path == "/v1" and llm.auth == ("api_key",)
    assert internal.label == "/internal" and internal.methods == ("GET", "POST")
    assert int(gateway.security.max_body_size) == 2 * 1024 * 1024
    assert gateway.security.hsts is not None
    assert gateway.security.hsts.header_value == "max-age=600; includeSubDomains"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "upstreams: {a: {url: ftp://x}}\nroutes: [{path: /, upstream: a}]",
            "upstreams.a.url: must start with http:// or https://",
        ),
        (
            "upstreams: {a: {url: 'http://u:p@x'}}\nroutes: [{path: /, upstream: a}]",
            "upstreams.a.url: must not carry credentials",
        ),
        (
            "upstreams: {a: {url: http://x}}\nroutes: [{path: /, upstream: b}]",
            "routes[0].upstream: unknown upstream 'b' (known: a)",
        ),
        (
            "upstreams: {a: {url: http://x}}\nroutes: [{path: v1, upstream: a}]",
            "routes[0].path: must start with '/'",
        ),
        (
            "upstreams: {a: {url: http://x}}\nroutes: [{path: /a/../b, upstream: a}]",
            "routes[0].path: must not contain '.' or '..' segments",
        ),
        (
            "upstreams: {a: {url: http://x}}\nroutes: [{path: /metrics, upstream: a}]",
            "routes[0].path: /metrics is answered by the gateway itself",
        ),
        (
            "upstreams: {a: {url: http://x}}\nroutes: [{path: /, upstream: a, stripprefix: true}]",
            "routes[0].stripprefix: unknown field (check the spelling)",
        ),
        (
            "upstreams: {a: {url: http://x, timeout: {read: -1}}}\n"
            "routes: [{path: /, upstream: a}]",
            "upstreams.a.timeout.read: must be greater than 0",
        ),
        (
            "upstreams: {a: {url: http://x, credential: magic}}\nroutes: [{path: /, upstream: a}]",
            "upstreams.a.credential: must be 'none', 'pool' or {header, value_env}",
        ),
        (
            "upstreams: {a: {url: http://x}}\nroutes: [{path: /, upstream: a, auth: [pigeon]}]",
            "routes[0].auth[0]: 'pigeon' is not one of: none, api_key, access_pass, jwt or session",
        ),
        (
            "upstreams: {a: {url: http://x}}\n"
            "routes: [{path: /, upstream: a, auth: [none, api_key]}]",
            "routes[0].auth: 'none' cannot be combined with other kinds",
        ),
        (
            "upstreams: {a: {url: http://x}}\n"
            "routes: [{name: r, path: /, upstream: a}, {name: r, path: /b, upstream: a}]",
            "routes[1].name: 'r' is already used by routes[0]",
        ),
        (
            "upstreams: {a: {url: http://x}}\n"
            "routes: [{path: /x, upstream: a, name: one}, {path: /x/, upstream: a, name: two}]",
            "routes[1].path: '/x' is matched the same way by routes[0]",
        ),
        (
            "upstreams: {a: {url: http://x}}\nroutes: [{path: /, upstream: a, methods: ['GE T']}]",
            "routes[0].methods: 'GE T' is not an HTTP method",
        ),
        (
            "upstreams: {a: {url: http://x}}\nroutes: [{path: /, upstream: a}]\n"
            "security: {cors: {allow_origins: ['*'], allow_credentials: true}}",
            "security.cors: allow_origins '*' cannot be used with allow_credentials",
        ),
        (
            "upstreams: {a: {url: http://x}}\nroutes: [{path: /, upstream: a}]\n"
            "security: {max_body_size: lots}",
            "security.max_body_size: must be a size such as 10MiB, 512KB or a number of bytes",
        ),
        ("routes: []", "upstreams: required field is missing"),
    ],
)
def test_each_mistake_names_its_field(tmp_path: Path, text: str, expected: str) -> None:
    message = errors_of(tmp_path, text)
    assert expected in message
    assert message.startswith(f"{tmp_path / 'gateway.yaml'}: ")
    assert "Traceback" not in message


def test_all_mistakes_are_reported_at_once(tmp_path: Path) -> None:
    message = errors_of(
        tmp_path,
        "upstreams: {a: {url: ftp://x, pool: {size: 0}}}\nroutes: [{path: x, upstream: a}]",
    )
    assert ": 3 errors\n" in message
    assert "upstreams.a.url" in message
    assert "upstreams.a.pool.size" in message
    assert "routes[0].path" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("upstreams: {a: [unclosed\n", "invalid YAML"),
        (
            "upstreams:\n  a: {url: http://x}\n  a: {url: http://y}\nroutes: []\n",
            "duplicate key 'a'",
        ),
        ("", "the file is empty"),
        ("- just\n- a list\n", "the top level must be a mapping"),
        ("a: !!python/object/apply:os.system [echo hi]\n", "invalid YAML"),
    ],
)
def test_yaml_problems_are_reported_with_their_position(
    tmp_path: Path, text: str, expected: str
) -> None:
    message = errors_of(tmp_path, text)
    assert expected in message


def test_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_gateway_file(tmp_path / "absent.yaml")


def test_no_file_means_the_builtin_openrouter_gateway() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    gateway = load_gateway(settings)
    assert gateway == default_gateway()
    upstream = gateway.upstreams["openrouter"]
    assert upstream.url == "https://openrouter.ai/api/v1"
    assert upstream.credential.kind == "pool"
    assert [(r.path, r.auth) for r in gateway.routes] == [
        ("/v1", ("api_key",)),
        ("/openrouter", ("api_key",)),
    ]


def test_the_builtin_gateway_is_the_shipped_openrouter_example() -> None:
    assert load_gateway_file(EXAMPLES / "openrouter-gateway.yaml") == default_gateway()


def test_warnings_point_at_open_routes_that_spend_a_credential(tmp_path: Path) -> None:
    gateway = load_gateway_file(
        write(
            tmp_path,
            "upstreams:\n"
            "  a: {url: http://x, credential: pool}\n"
            "  b: {url: http://y, credential: {kind: pool, shared_access: everyone}}\n"
            "  c: {url: http://z, credential: {header: X-Key, value_env: KEY}}\n"
            "routes:\n"
            "  - {name: open, path: /a, upstream: a}\n"
            "  - {name: lent, path: /b, upstream: b}\n"
            "  - {name: fixed, path: /c, upstream: c}\n",
        )
    )
    assert gateway.warnings() == [
        "routes[0] (open): open to anyone (auth: [none]), but upstream 'a' lends its shared "
        "keys only to granted accounts: anonymous requests get 403 unless shared_access is "
        "everyone",
        "routes[1] (lent): open to anyone (auth: [none]): anyone who can reach the gateway "
        "spends the shared key pool of upstream 'b'",
        "routes[2] (fixed): open to anyone (auth: [none]) while upstream 'c' adds a fixed "
        "credential",
    ]


@pytest.mark.parametrize(
    ("accounts", "shared_access", "warned"),
    [
        ({}, "granted", False),
        ({"registration": "open"}, "granted", False),
        ({"registration": True, "permissions": ["pool:a"]}, "granted", True),
        ({"registration": "open", "permissions": ["pool:*"]}, "granted", True),
        ({"registration": "open", "permissions": ["pool:other"]}, "granted", False),
        ({"registration": "open"}, "everyone", True),
        ({"registration": "closed"}, "everyone", False),
    ],
)
def test_open_registration_that_lends_a_pool_is_warned_about(
    accounts: dict[str, object], shared_access: str, warned: bool
) -> None:
    gateway = parse_gateway(
        {
            "upstreams": {
                "a": {
                    "url": "http://x",
                    "credential": {"kind": "pool", "shared_access": shared_access},
                }
            },
            "routes": [{"path": "/", "upstream": "a", "auth": "api_key"}],
            "accounts": accounts,
        },
        source="test",
    )
    registration = gateway.registration_open(None)
    notes = gateway.warnings(registration_open=registration)
    assert bool(notes) is warned
    assert all("spend the shared key pool of upstream 'a'" in note for note in notes)
    # The environment's FERRYMAN_REGISTRATION_ENABLED wins over the file either way.
    assert gateway.registration_open(False) is False
    assert gateway.registration_open(True) is True


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_example_is_valid(example: Path) -> None:
    load_gateway_file(example)


def test_settings_errors_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERRYMAN_PORT", "eighty")
    monkeypatch.setenv("FERRYMAN_TRUSTED_PROXIES", "10.0.0.0/8, not-a-network")
    monkeypatch.setenv("FERRYMAN_LOG_LEVEL", "loud")
    with pytest.raises(ConfigError) as info:
        load_settings(_env_file=None)
    message = str(info.value)
    assert "FERRYMAN_PORT: must be a whole number" in message
    assert "FERRYMAN_TRUSTED_PROXIES:" in message
    assert "FERRYMAN_LOG_LEVEL: 'loud' is not one of: debug, info, warning or error" in message
    assert "Input should" not in message


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FERRYMAN_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FERRYMAN_TRUSTED_PROXIES", "10.0.0.0/8,192.168.1.1")
    monkeypatch.setenv("FERRYMAN_REDIS_URL", "")
    settings = load_settings(_env_file=None)
    assert settings.data_dir == tmp_path
    assert [str(n) for n in settings.trusted_proxies] == ["10.0.0.0/8", "192.168.1.1/32"]
    assert settings.redis_url is None
    assert settings.resolved_database_url == f"sqlite+aiosqlite:///{tmp_path / 'ferryman.db'}"


SCALARS = """
upstreams:
  a: {url: http://x, credential: {kind: pool, invalid_statuses: 401}}
routes:
  - {name: open, path: /open, upstream: a, auth: none, methods: get}
  - {name: keyed, path: /keyed, upstream: a, auth: api_key, limits: 60/minute, scopes: proxy}
security:
  trusted_hosts: api.example.com
  cors: {allow_origins: "*", allow_methods: GET}
"""


def test_a_single_value_where_a_list_is_expected_is_a_list_of_one(tmp_path: Path) -> None:
    gateway = load_gateway_file(write(tmp_path, SCALARS))
    open_route, keyed = gateway.routes
    assert open_route.auth == ("none",) and open_route.methods == ("GET",)
    assert keyed.auth == ("api_key",) and keyed.scopes == ("proxy",)
    assert [tier.rate for tier in keyed.limits] == ["60/minute"]
    assert gateway.security.trusted_hosts == ("api.example.com",)
    assert gateway.security.cors is not None
    assert gateway.security.cors.allow_origins == ("*",)
    credential = gateway.upstreams["a"].credential
    assert credential.kind == "pool" and credential.invalid_statuses == (401,)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "upstreams: {a: {url: http://x}}\nroutes: [{path: /, upstream: a, auth: {x: 1}}]",
            "routes[0].auth: must be a list, e.g. [a, b]",
        ),
        (
            "upstreams: {a: {url: http://x, pool: {size: lots}}}\nroutes: [{path: /, upstream: a}]",
            "upstreams.a.pool.size: must be a whole number",
        ),
        (
            "upstreams: {a: {url: http://x, tls_verify: maybe}}\nroutes: [{path: /, upstream: a}]",
            "upstreams.a.tls_verify: must be true or false",
        ),
        (
            "upstreams: {a: {url: http://x, credential: {kind: pool, strategy: best}}}\n"
            "routes: [{path: /, upstream: a}]",
            "upstreams.a.credential.strategy: 'best' is not one of: round_robin, least_used, "
            "weighted or random",
        ),
        (
            "upstreams: {a: {url: http://x, credential: {kind: magic}}}\n"
            "routes: [{path: /, upstream: a}]",
            "upstreams.a.credential: kind must be one of: none, pool, fixed",
        ),
        (
            "upstreams: {a: {url: http://x}}\nroutes: [{path: /, upstream: a}]\n"
            "limiter: {defaults: {pigeon: 1/second}}",
            "limiter.defaults.pigeon: 'pigeon' is not one of: api_key, access_pass, jwt or session",
        ),
        (
            "upstreams: {a: {url: http://x}}\nroutes: [{path: /, upstream: a}]\n"
            "limiter: {breaker: {failures: 0}}",
            "limiter.breaker.failures: must be at least 1",
        ),
        (
            "upstreams: {a: {url: http://x}}\nroutes: [{path: /, upstream: a}]\n"
            "limiter: {breaker: {cooloff: 10, max_cooloff: 5}}",
            "limiter.breaker: max_cooloff (5) must be at least cooloff (10)",
        ),
        (
            "upstreams: {a: {url: http://x}}\nroutes: [{path: /, upstream: a, name: 'a b'}]",
            "routes[0].name: 'a b' is not allowed here",
        ),
        (
            "upstreams: {a: {url: http://x}}\nroutes: [{path: /, upstream: a}]\n"
            "security: {cors: yes}",
            "security.cors: must be a mapping of fields",
        ),
        (
            "upstreams: {a: {url: http://x}}\nroutes: {path: /, upstream: a}",
            "routes: must be a list, e.g. [a, b]",
        ),
        (
            "upstreams: [a]\nroutes: []",
            "upstreams: must be a mapping of names to values",
        ),
    ],
)
def test_mistakes_are_told_in_the_operators_words(tmp_path: Path, text: str, expected: str) -> None:
    message = errors_of(tmp_path, text)
    assert expected in message
    for jargon in ("Input should", "valid tuple", "valid dictionary", "[key]", "tagged-union"):
        assert jargon not in message
