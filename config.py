"""Command-line and environment configuration of the rollcall server.

Every flag has an environment fallback so that deployment scripts can use either. The flag names
are a contract: deployment scripts and health checks start the server with them. An invalid value,
from the command line or the environment, exits 2 with one line naming the flag.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NoReturn
from urllib.parse import urlsplit

import logs
from handlers.tokens import NOT_USER_ID_CLAIMS, USER_ID_CLAIM
from handlers.validation import ROLE_TEACHER
from logs import LOG_FORMATS
from protocol.engine import OUTPUT_LIMIT_PAYLOADS
from protocol.redis_clients import (
    SENTINEL_SCHEME,
    BadRedisUrl,
    is_sentinel_url,
    parse_sentinel_url,
)
from store.roster import ROSTER_TTL

#: --teacher-auth: `token` (a teacher's join carries its own teacher token) or `none` (the design
#: document's tokenless teacher flow)
TEACHER_AUTH_TOKEN = "token"
TEACHER_AUTH_NONE = "none"
TEACHER_AUTH_MODES = (TEACHER_AUTH_TOKEN, TEACHER_AUTH_NONE)
DEFAULT_PARTICIPANT_ROLES = ("student",)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
EVENT_LOOPS = ("uvloop", "asyncio")
ADMIN_TOKEN_MIN_LENGTH = 16
MAX_JOIN_RATE = 1000.0
MAX_ROSTER_TTL = 366 * 86400
MAX_SESSION_OUTPUT = 10_000_000_000
MAX_CONNECTIONS = 100_000_000
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
_ROLE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")
#: the schemes of redis-py's own URLs (redis+sentinel:// is protocol/redis_clients.py's)
REDIS_SCHEMES = ("redis", "rediss", "unix")
#: the longest --user-id-claim: room for a collision-resistant claim name (a URI, RFC 7519 4.2)
MAX_CLAIM_NAME = 256


@dataclass(frozen=True)
class Config:
    """The validated settings one server process runs with."""

    host: str = "127.0.0.1"
    port: int = 8000
    redis_url: str = "redis://127.0.0.1:6379/0"
    database_url: str = "postgresql://rollcall@127.0.0.1:5432/rollcall"
    access_token_secret: str | None = None
    participant_roles: tuple[str, ...] = DEFAULT_PARTICIPANT_ROLES
    teacher_auth: str = TEACHER_AUTH_TOKEN
    user_id_claim: str = USER_ID_CLAIM
    mixpanel_token: str | None = None
    mixpanel_events_url: str | None = None
    cors_allowed_origins: str | list[str] | None = None
    ping_interval: float = 25.0
    ping_timeout: float = 20.0
    connect_timeout: float = 45.0
    max_payload: int = 1_000_000
    store_timeout: float = 2.0
    key_prefix: str = ""
    log_level: str = "INFO"
    event_loop: str = "uvloop"
    admin_token: str | None = field(default=None, repr=False)
    log_format: str = "text"
    join_rate: float = 5.0
    join_burst: int = 10
    max_connections_per_ip: int = 1000
    #: None: web.openfiles' default, the open-file limit less its HEADROOM
    max_connections: int | None = None
    #: None: protocol.engine's default, OUTPUT_LIMIT_PAYLOADS x max_payload
    max_session_output: int | None = None
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = LOOPBACK
    message_queue: str | None = None
    roster_ttl: int = ROSTER_TTL
    websocket_compression: bool = False
    liveness_ttl: float = 15.0
    liveness_interval: float = 5.0
    handover_grace: float = 30.0
    shutdown_drain: float = 3.0
    reuse_port: bool = False


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 < value <= 86400:
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most 86400, got {text!r}")
    return value


def _seconds_or_zero(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 <= value <= 86400:
        raise argparse.ArgumentTypeError(f"must be from 0 to 86400, got {text!r}")
    return value


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number per second, got {text!r}") from None
    if not 0 <= value <= MAX_JOIN_RATE:
        raise argparse.ArgumentTypeError(
            f"must be from 0 (unlimited) to {MAX_JOIN_RATE:g}, got {text!r}"
        )
    return value


def _int_in(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}, got {text!r}")
        return value

    return parse


def _url(schemes: tuple[str, ...], optional: bool = False) -> Callable[[str], str | None]:
    def parse(text: str) -> str | None:
        if optional and not text:
            return None
        parts = urlsplit(text)
        if parts.scheme not in schemes or not (parts.netloc or parts.path):
            raise argparse.ArgumentTypeError(
                f"expected a URL starting with {' or '.join(s + '://' for s in schemes)}, "
                f"got {text!r}"
            )
        return text

    return parse


def _redis_url(optional: bool = False) -> Callable[[str], str | None]:
    """redis-py's URLs, or python-socketio's redis+sentinel:// form (protocol/redis_clients.py)."""
    by_scheme = _url((*REDIS_SCHEMES, SENTINEL_SCHEME), optional)

    def parse(text: str) -> str | None:
        url = by_scheme(text)
        if url is not None and is_sentinel_url(url):
            try:
                parse_sentinel_url(url)
            except BadRedisUrl as exc:
                raise argparse.ArgumentTypeError(f"{exc}, got {text!r}") from None
        return url

    return parse


def _roles(text: str) -> tuple[str, ...]:
    roles = tuple(role.strip() for role in text.split(",") if role.strip())
    if not roles:
        raise argparse.ArgumentTypeError("expected at least one role")
    for role in roles:
        if not _ROLE_NAME.fullmatch(role):
            raise argparse.ArgumentTypeError(f"invalid role name {role!r}")
        if role == ROLE_TEACHER:
            raise argparse.ArgumentTypeError(f"{ROLE_TEACHER!r} cannot be a participant role")
    return roles


def _teacher_auth(text: str) -> str:
    if text not in TEACHER_AUTH_MODES:
        raise argparse.ArgumentTypeError(
            f"expected one of {', '.join(TEACHER_AUTH_MODES)}, got {text!r}"
        )
    return text


def _claim_name(text: str) -> str:
    if not 0 < len(text) <= MAX_CLAIM_NAME or any(ch.isspace() or not ch.isprintable()
                                                  for ch in text):
        raise argparse.ArgumentTypeError(
            f"expected a claim name of 1 to {MAX_CLAIM_NAME} characters without white space, "
            f"got {text!r}"
        )
    if text in NOT_USER_ID_CLAIMS:
        raise argparse.ArgumentTypeError(f"{text!r} is a claim that names no user")
    return text


def _origins(text: str) -> str | list[str] | None:
    text = text.strip()
    if not text:
        return None
    if text == "*":
        return "*"
    origins = [origin.strip() for origin in text.split(",") if origin.strip()]
    for origin in origins:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path:
            raise argparse.ArgumentTypeError(
                f"expected '*' or origins like https://host, got {origin!r}"
            )
    return origins


def _optional_int_in(low: int, high: int) -> Callable[[str], int | None]:
    bounded = _int_in(low, high)

    def parse(text: str) -> int | None:
        return bounded(text) if text.strip() else None

    return parse


def _networks(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    networks = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected addresses or networks like 10.0.0.0/8, got {item!r}"
            ) from None
    return tuple(networks)


def _boolean(text: str) -> bool:
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise argparse.ArgumentTypeError(
        f"expected one of {', '.join(TRUE_WORDS + FALSE_WORDS)}, got {text!r}"
    )


def _optional(text: str) -> str | None:
    return text or None


def _log_level(text: str) -> str:
    level = text.upper()
    if level not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(LOG_LEVELS)}, got {text!r}")
    return level


def _log_format(text: str) -> str:
    if text not in LOG_FORMATS:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(LOG_FORMATS)}, got {text!r}")
    return text


def _admin_token(text: str) -> str | None:
    if not text:
        return None
    if len(text) < ADMIN_TOKEN_MIN_LENGTH or any(ch.isspace() for ch in text):
        raise argparse.ArgumentTypeError(
            f"must be at least {ADMIN_TOKEN_MIN_LENGTH} characters without white space"
        )
    return text


def _key_prefix(text: str) -> str:
    if any(ch.isspace() for ch in text):
        raise argparse.ArgumentTypeError("must not contain white space")
    return text


class _OneLineParser(argparse.ArgumentParser):
    """Reports a bad value in one line, as operators grep logs for it."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


# (flag, environment variable, parser, help); the default comes from Config.
_FLAGS: tuple[tuple[str, str, Callable[[str], object], str], ...] = (
    ("--host", "ROLLCALL_HOST", str, "address to listen on"),
    ("--port", "ROLLCALL_PORT", _int_in(1, 65535), "port to listen on"),
    (
        "--redis-url",
        "REDIS_URL",
        _redis_url(),
        "Redis for presence keys: redis://, rediss://, unix://, or "
        "redis+sentinel://[user:password@]host:port[,host:port...]/[db]/service_name (Sentinel)",
    ),
    (
        "--database-url",
        "DATABASE_URL",
        _url(("postgresql", "postgres")),
        "PostgreSQL holding the lesson and student_attend tables",
    ),
    (
        "--access-token-secret",
        "ACCESS_TOKEN_SECRET",
        _optional,
        "HS256 secret of participant access tokens; without it every token is INVALID_TOKEN",
    ),
    ("--participant-roles", "PARTICIPANT_ROLES", _roles, "comma-separated participant roles"),
    (
        "--teacher-auth",
        "ROLLCALL_TEACHER_AUTH",
        _teacher_auth,
        "token: a teacher's join needs an access token with role 'teacher' whose client id is "
        "its user_id; none: any caller may join as teacher (the design document's flow)",
    ),
    (
        "--user-id-claim",
        "ROLLCALL_USER_ID_CLAIM",
        _claim_name,
        "the access token claim naming the platform's user: a participant's join counts as the "
        "attendance of its user_id only if this claim, 'sub' or the client id equals it",
    ),
    (
        "--mixpanel-token",
        "MIXPANEL_TOKEN",
        _optional,
        "Mixpanel project token; tracking off without it",
    ),
    (
        "--mixpanel-events-url",
        "MIXPANEL_EVENTS_URL",
        _url(("http", "https"), optional=True),
        "override of Mixpanel's track endpoint",
    ),
    (
        "--cors-allowed-origins",
        "CORS_ALLOWED_ORIGINS",
        _origins,
        "'*' or comma-separated origins allowed to connect; same origin only when empty",
    ),
    (
        "--ping-interval",
        "ROLLCALL_PING_INTERVAL",
        _positive_float,
        "Engine.IO ping interval, seconds",
    ),
    ("--ping-timeout", "ROLLCALL_PING_TIMEOUT", _positive_float, "Engine.IO ping timeout, seconds"),
    (
        "--connect-timeout",
        "ROLLCALL_CONNECT_TIMEOUT",
        _positive_float,
        "seconds a client has to join a namespace after the handshake",
    ),
    (
        "--max-payload",
        "ROLLCALL_MAX_PAYLOAD",
        _int_in(1024, 100_000_000),
        "largest HTTP body or WebSocket message accepted, bytes",
    ),
    (
        "--store-timeout",
        "ROLLCALL_STORE_TIMEOUT",
        _positive_float,
        "seconds to wait for Redis or PostgreSQL before answering UNAVAILABLE",
    ),
    (
        "--key-prefix",
        "ROLLCALL_KEY_PREFIX",
        _key_prefix,
        "prefix of every Redis key written (other services read them: keep empty unless agreed)",
    ),
    ("--log-level", "ROLLCALL_LOG_LEVEL", _log_level, "one of " + ", ".join(LOG_LEVELS)),
    ("--event-loop", "ROLLCALL_EVENT_LOOP", str, "uvloop (default where installed) or asyncio"),
    (
        "--admin-token",
        "ADMIN_TOKEN",
        _admin_token,
        "bearer token of the /lessons/{id} views; they answer 404 without it",
    ),
    ("--log-format", "ROLLCALL_LOG_FORMAT", _log_format, "one of " + ", ".join(LOG_FORMATS)),
    (
        "--join-rate",
        "ROLLCALL_JOIN_RATE",
        _rate,
        "join_lesson requests per second one connection may sustain (0: unlimited); "
        "faster ones answer RATE_LIMITED",
    ),
    (
        "--join-burst",
        "ROLLCALL_JOIN_BURST",
        _int_in(1, 10_000),
        "join_lesson requests one connection may send at once before --join-rate applies",
    ),
    (
        "--max-connections-per-ip",
        "ROLLCALL_MAX_CONNECTIONS_PER_IP",
        _int_in(0, 1_000_000),
        "open Engine.IO connections one client address may hold (0: unlimited); "
        "more are refused with HTTP 429. A school behind NAT is one address",
    ),
    (
        "--max-connections",
        "ROLLCALL_MAX_CONNECTIONS",
        _optional_int_in(0, MAX_CONNECTIONS),
        "open Engine.IO connections (and handshakes in progress) of the whole process (0: "
        "unlimited); more are refused with HTTP 503, a WebSocket before its 101; empty: the "
        "open-file limit (raised to the hard limit at start-up) less a headroom for the "
        "server's own files, as logged at start-up",
    ),
    (
        "--max-session-output",
        "ROLLCALL_MAX_SESSION_OUTPUT",
        _optional_int_in(1024, MAX_SESSION_OUTPUT),
        "bytes queued for one client that is not reading before its session is closed; "
        f"at least --max-payload; empty: {OUTPUT_LIMIT_PAYLOADS} x --max-payload",
    ),
    (
        "--trusted-proxies",
        "ROLLCALL_TRUSTED_PROXIES",
        _networks,
        "comma-separated addresses or networks (CIDR) of the proxies whose X-Real-IP / "
        "X-Forwarded-For name the client; from any other peer the peer's address is used; "
        "empty: none",
    ),
    (
        "--message-queue",
        "ROLLCALL_MESSAGE_QUEUE",
        _redis_url(optional=True),
        "Redis whose pub/sub relays emits, room changes and disconnects between processes "
        "(python-socketio's AsyncRedisManager format, channel 'socketio', redis+sentinel:// "
        "too); one process without it",
    ),
    (
        "--roster-ttl",
        "ROLLCALL_ROSTER_TTL",
        _int_in(0, MAX_ROSTER_TTL),
        "seconds a lesson's roster (who joined, when, who left) outlives its last change; "
        "0 turns the roster off",
    ),
    (
        "--websocket-compression",
        "ROLLCALL_WEBSOCKET_COMPRESSION",
        _boolean,
        "negotiate permessage-deflate with WebSocket clients that offer it; costs about 170 KiB "
        "of zlib state per such connection for its whole life (off: every client works without)",
    ),
    (
        "--liveness-ttl",
        "ROLLCALL_LIVENESS_TTL",
        _positive_float,
        "seconds this process stays alive in Redis without a heartbeat; once it lapses, a live "
        "process clears what this one held",
    ),
    (
        "--liveness-interval",
        "ROLLCALL_LIVENESS_INTERVAL",
        _positive_float,
        "seconds between heartbeats, each also noticing whether Redis lost this process's "
        "keys (then re-asserting its presence), retrying failed leaves and sweeping dead "
        "processes; below --liveness-ttl",
    ),
    (
        "--handover-grace",
        "ROLLCALL_HANDOVER_GRACE",
        _seconds_or_zero,
        "seconds a stopped process's presence stays for its clients to take over by joining "
        "again (on the next process or a peer) before it is swept; 0 clears it at the stop",
    ),
    (
        "--shutdown-drain",
        "ROLLCALL_SHUTDOWN_DRAIN",
        _seconds_or_zero,
        "seconds over which a stop closes its connections in batches, so that clients do not "
        "all reconnect at once; below --handover-grace",
    ),
    (
        "--reuse-port",
        "ROLLCALL_REUSE_PORT",
        _boolean,
        "listen with SO_REUSEPORT, so that the next process (started with it too) can listen on "
        "the same port while this one drains",
    ),
)
#: flags that also stand alone (`--flag` alone means `--flag true`)
_SWITCHES = frozenset({"--websocket-compression", "--reuse-port"})


def _shown(value: object) -> str:
    if isinstance(value, bool):
        return TRUE_WORDS[-1] if value else FALSE_WORDS[-1]
    if isinstance(value, tuple):
        return ",".join(str(item) for item in value)
    return "" if value is None else str(value)


def build_parser(environ: dict[str, str] | None = None) -> argparse.ArgumentParser:
    """The argument parser, with each default taken from the environment when set there."""
    environ = os.environ if environ is None else environ
    defaults = Config()
    parser = _OneLineParser(
        prog="server.py",
        description="rollcall: realtime presence server for live lessons (Socket.IO v5).",
    )
    for flag, env, parse, text in _FLAGS:
        name = flag[2:].replace("-", "_")
        default = environ.get(env, _shown(getattr(defaults, name)))
        kwargs: dict[str, object] = {"type": parse, "default": default, "metavar": env}
        if flag == "--event-loop":
            kwargs["choices"] = EVENT_LOOPS
            kwargs["type"] = str
            kwargs["metavar"] = "{" + ",".join(EVENT_LOOPS) + "}"
        if flag in _SWITCHES:
            kwargs["nargs"] = "?"
            kwargs["const"] = True
        shown = (
            "(secret)"
            if "secret" in name or "token" in name
            else repr(_shown(getattr(defaults, name)))
        )
        parser.add_argument(flag, help=f"{text} [env {env}; default {shown}]", **kwargs)
    return parser


def parse_config(
    argv: Sequence[str] | None = None, environ: dict[str, str] | None = None
) -> Config:
    """Parse flags and environment into a Config, exiting 2 with one line on a bad value."""
    parser = build_parser(environ)
    args = parser.parse_args(argv)
    if args.event_loop not in EVENT_LOOPS:
        parser.error(
            f"argument --event-loop: expected one of {', '.join(EVENT_LOOPS)}, "
            f"got {args.event_loop!r}"
        )
    config = Config(**vars(args))
    if config.max_session_output is not None and config.max_session_output < config.max_payload:
        parser.error(
            f"argument --max-session-output: must be at least --max-payload "
            f"({config.max_payload}), got {config.max_session_output}"
        )
    if config.liveness_interval >= config.liveness_ttl:
        parser.error(
            f"argument --liveness-interval: must be below --liveness-ttl "
            f"({config.liveness_ttl:g}), got {config.liveness_interval:g}"
        )
    if 0 < config.handover_grace <= config.shutdown_drain:
        parser.error(
            f"argument --shutdown-drain: must be below --handover-grace "
            f"({config.handover_grace:g}) unless that is 0, got {config.shutdown_drain:g}"
        )
    return config


def configure_logging(level: str, log_format: str = "text") -> None:
    """Log to stderr at `level`, as readable text or as one JSON object per line."""
    logs.configure(level, log_format)
