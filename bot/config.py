"""Configuration: TOML file + environment → frozen dataclasses, validated at start-up.

Every key is documented in ``config.example.toml``. Any key may come from the environment:
``ARBOT_<SECTION>_<KEY>`` overrides ``[section] key`` (for example ``ARBOT_DATABASE_URL``,
``ARBOT_WECOM_SECRET``); a table is given as a JSON object
(``ARBOT_WECOM_ROBOT_WEBHOOK_KEYS='{"managers": "…"}'``) and a list as a JSON array or
comma-separated. ``ARBOT_<SECTION>_<KEY>_FILE=/run/secrets/x`` reads the value from that file
(Docker and Kubernetes secrets), trailing newline dropped. A secret's value never appears in an
error message.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import tomllib
from dataclasses import dataclass, field
from datetime import date, time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, get_origin, get_type_hints
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.config_error import ConfigError
from bot.policy import (ConductConfig, CreditConfig, LateFeeConfig, PolicyConfig, SmsConfig, SmtpConfig,
                        StatuteConfig, validate_policy)
from domain.commission import tiers_from
from domain.priority import Weights


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = ""          # how platforms and browsers reach us, e.g. https://arbot.example.com


@dataclass(frozen=True)
class DatabaseConfig:
    url: str = "sqlite+aiosqlite:///./arbot.db"
    echo: bool = False


@dataclass(frozen=True)
class CompanyConfig:
    name: str = "示例公司"
    timezone: str = "Asia/Shanghai"
    currency: str = "CNY"
    # reporting conversions for foreign-currency receivables, e.g. {USD = "7.10"}
    fx_rates: dict = field(default_factory=dict)
    # the letterhead and payment details of letters and statements (付款提醒函, 对账单...)
    address: str = ""
    bank: str = ""                # 开户行, e.g. 招商银行上海分行张江支行
    account: str = ""             # 账号
    contact: str = ""             # who the customer calls about the account (财务联系人)
    phone: str = ""


@dataclass(frozen=True)
class CalendarConfig:
    extra_holidays: tuple = ()    # ISO dates the library does not know yet
    extra_workdays: tuple = ()    # make-up working days (调休) not yet in the library


@dataclass(frozen=True)
class AgingConfig:
    # upper bounds (days overdue) of each overdue bucket; the last bucket is open-ended.
    # [30, 60, 90] → 未到期, 1-30, 31-60, 61-90, 90+
    buckets: tuple = (30, 60, 90)
    top_customers: int = 5


@dataclass(frozen=True)
class CollectionConfig:
    push_time: str = "09:00"          # working-day morning push
    reply_window_hours: int = 24      # counted on working days only: a Friday push closes Monday
    promise_grace_days: int = 1       # a promise is broken this many working days after its date if unpaid
    max_message_bytes: int = 2000     # split pushes longer than this (WeCom text limit is 2048)
    # the jobs' notifications to one person go out as one digest per job run; the lines a
    # person's digests show in one day stop here, the rest are counted ("另有 N 条") for /通知
    digest_max_items: int = 30
    # the morning push numbers this many items, highest priority first ([priority]); the rest
    # are one line ("另有 N 笔…") and /overdue lists them
    push_max_items: int = 20


@dataclass(frozen=True)
class CommissionConfig:
    """Commission on collections (domain/commission.py): marginal tiers on each collection."""
    tiers: tuple = ({"upto": 100000, "rate": "0.02"}, {"upto": 500000, "rate": "0.03"}, {"rate": "0.05"})


@dataclass(frozen=True)
class PriorityConfig(Weights):
    """``[priority]``: the weights of the priority formula (domain/priority.py, who to chase
    first); its defaults are the formula's own."""


@dataclass(frozen=True)
class WeComConfig:
    enabled: bool = False
    corp_id: str = ""
    agent_id: str = ""
    secret: str = ""
    token: str = ""
    encoding_aes_key: str = ""
    api_base: str = "https://qyapi.weixin.qq.com"
    robot_webhook_keys: dict = field(default_factory=dict)   # name → key
    ai_bot_enabled: bool = False
    ai_bot_token: str = ""
    ai_bot_encoding_aes_key: str = ""
    card_buttons: bool = False
    card_items: int = 5           # button cards for at most this many items per push (rate limits)
    images: bool = True           # charts as pictures (media upload); false: the text (with its link) only


@dataclass(frozen=True)
class DingTalkConfig:
    enabled: bool = False
    mode: str = "http"            # "http" | "stream"
    app_key: str = ""
    app_secret: str = ""
    robot_code: str = ""
    api_base: str = "https://api.dingtalk.com"
    oapi_base: str = "https://oapi.dingtalk.com"
    robot_webhooks: dict = field(default_factory=dict)       # name → {url, secret}
    images: bool = True           # charts as pictures (media upload); false: the text (with its link) only
    # interactive cards (互动卡片): the id of the card template arbot fills in (docs/dingtalk.md,
    # "Cards"); empty: no cards on DingTalk
    card_template_id: str = ""
    card_buttons: bool = False
    card_items: int = 5           # button cards for at most this many items per push
    # HTTP mode only: the card callback route arbot registers at start-up, and the apiSecret
    # DingTalk signs each click with (Stream mode needs neither: clicks come over the socket)
    card_callback_route_key: str = "arbot_cards"
    card_callback_secret: str = ""


@dataclass(frozen=True)
class FeishuConfig:
    enabled: bool = False
    mode: str = "http"            # "http": event callback URL /feishu/events ; "ws": long connection, no public URL
    app_id: str = ""              # cli_xxx
    app_secret: str = ""
    verification_token: str = ""  # 事件与回调 → 加密策略 → Verification Token
    encrypt_key: str = ""         # 事件与回调 → 加密策略 → Encrypt Key (empty: events arrive unencrypted)
    api_base: str = "https://open.feishu.cn"    # Lark (international): https://open.larksuite.com
    id_type: str = "user_id"      # the sender id people.csv's feishu_userid holds: "user_id" | "open_id"
    bot_open_id: str = ""         # the bot's open_id: a group message counts as "to the bot" only if it @s it
    card_buttons: bool = False
    card_items: int = 5           # button cards for at most this many items per push
    images: bool = True           # charts as pictures (im/v1/images upload); false: the text only


@dataclass(frozen=True)
class LocalConfig:
    enabled: bool = False
    allow_remote: bool = False    # the local chat lets anyone speak as anyone: loopback only by default
    images: bool = True           # the chart shown in the page (a data: URL in the JSON); false: text only
    # the Host / Origin names the local chat answers besides loopback ones (127.0.0.0/8, ::1,
    # localhost): a page on another site that resolves its own name to 127.0.0.1 (DNS
    # rebinding) must not be able to speak as anyone. Add a name only if you serve it under one.
    allowed_hosts: tuple[str, ...] = ()


@dataclass(frozen=True)
class OutboxConfig:
    # false: this instance queues messages but does not send them
    send: bool = True
    # the per-member and per-robot limits counted in the database (storage/rate_slots.py), so that
    # several instances sending together still keep them: "auto" (on for PostgreSQL, the
    # database of several instances; off for SQLite), "on", "off" (counted per process)
    shared_rate_limits: str = "auto"
    concurrency: int = 4
    max_attempts: int = 8
    backoff_base_seconds: float = 2.0
    backoff_cap_seconds: float = 600.0
    poll_seconds: float = 1.0
    robot_per_minute: int = 20
    member_per_minute: int = 30
    # of each member's minute, this many sends are kept for answers to the person's own messages:
    # notifications use at most member_per_minute - reply_reserve, so a question never waits
    reply_reserve: int = 5


@dataclass(frozen=True)
class PermissionsConfig:
    # people (ids) who approve write-offs; thresholds in yuan
    finance_head: str = ""
    sales_director: str = ""
    general_manager: str = ""
    writeoff_small_limit: Decimal = Decimal("50000")


@dataclass(frozen=True)
class ReportsConfig:
    # where the weekly aging report goes: "local:mgmt", "wecom:robot:managers", "dingtalk:robot:managers"
    # ("platform:target" means a group chat the bot is in; "platform:robot:name" a configured group robot)
    manager_groups: tuple = ()
    monthly_day: int = 5              # the monthly report goes out on this day of the month (1..28)
    monthly_recipients_roles: tuple = ("manager", "finance", "legal", "supervisor")
    dir: str = "./var/reports"        # XLSX and chart files, served by signed links
    link_days: int = 31               # how long a report's download link stays valid


@dataclass(frozen=True)
class WebConfig:
    secret: str = ""                  # HMAC key for login and download links (ARBOT_WEB_SECRET); empty: one kept in the database
    link_minutes: int = 15            # a /dashboard login link expires after this
    session_hours: int = 8            # the dashboard session cookie lasts this long


@dataclass(frozen=True)
class ImportConfig:
    # how a date whose year is last or has two digits is read (3/5/2026, 26-3-5, 5.3.26):
    # "ymd" and "mdy" read 3/5/2026 as March 5 (Excel's US format), "dmy" as 3 May;
    # 26-3-5 is 2026-03-05 under "ymd" (用友 and 金蝶's short form)
    date_order: str = "ymd"


@dataclass(frozen=True)
class RetentionConfig:
    # delivered messages (and the digest lines they carried) are forgotten after this many days;
    # so is an idempotency key, so it must outlive any job's catch-up by far
    outbox_days: int = 180
    # handled incoming events: their keys deduplicate platform retries, which come within minutes
    events_days: int = 60
    time: str = "03:30"               # the nightly housekeeping (company timezone)


@dataclass(frozen=True)
class LogConfig:
    level: str = "INFO"               # DEBUG | INFO | WARNING | ERROR
    stall_ms: int = 1000              # a turn of the event loop or a hold of the write gate longer than this is logged; 0: off


@dataclass(frozen=True)
class LettersConfig:
    template_dir: str = ""            # a folder of the company's own templates (same names as bot/templates/letters)
    font: str = ""                    # a CJK TrueType font for PDFs; empty: the first of the usual places found
    statement_day: int = 5            # monthly statements (对账单) go to every customer contact by this day (1..28)
    statement_time: str = "09:00"
    confirm_days: int = 20            # how long a statement's confirmation link stays valid
    confirm_per_minute: int = 20      # requests to the confirmation page per address and minute


@dataclass(frozen=True)
class Config:
    server: ServerConfig = ServerConfig()
    database: DatabaseConfig = DatabaseConfig()
    company: CompanyConfig = CompanyConfig()
    calendar: CalendarConfig = CalendarConfig()
    aging: AgingConfig = AgingConfig()
    collection: CollectionConfig = CollectionConfig()
    priority: PriorityConfig = PriorityConfig()
    commission: CommissionConfig = CommissionConfig()
    wecom: WeComConfig = WeComConfig()
    dingtalk: DingTalkConfig = DingTalkConfig()
    feishu: FeishuConfig = FeishuConfig()
    local: LocalConfig = LocalConfig()
    outbox: OutboxConfig = OutboxConfig()
    permissions: PermissionsConfig = PermissionsConfig()
    policy: PolicyConfig = PolicyConfig()
    conduct: ConductConfig = ConductConfig()
    credit: CreditConfig = CreditConfig()
    late_fees: LateFeeConfig = LateFeeConfig()
    statute: StatuteConfig = StatuteConfig()
    smtp: SmtpConfig = SmtpConfig()
    sms: SmsConfig = SmsConfig()
    reports: ReportsConfig = ReportsConfig()
    web: WebConfig = WebConfig()
    imports: ImportConfig = dataclasses.field(default=ImportConfig(), metadata={"section": "import"})
    log: LogConfig = LogConfig()
    retention: RetentionConfig = RetentionConfig()
    letters: LettersConfig = LettersConfig()
    demo: bool = False

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.company.timezone)

    def holiday_dates(self) -> tuple[list[date], list[date]]:
        return ([date.fromisoformat(d) for d in self.calendar.extra_holidays],
                [date.fromisoformat(d) for d in self.calendar.extra_workdays])


SECRET_KEYS = {("wecom", "secret"), ("wecom", "token"), ("wecom", "encoding_aes_key"),
               ("wecom", "ai_bot_token"), ("wecom", "ai_bot_encoding_aes_key"),
               ("dingtalk", "app_secret"), ("dingtalk", "card_callback_secret"), ("feishu", "app_secret"), ("feishu", "verification_token"),
               ("feishu", "encrypt_key"), ("database", "url"), ("smtp", "password"), ("sms", "app_key"),
               ("sms", "access_key_secret"),
               ("web", "secret")}
# tables whose values are secrets (a robot's key is the whole credential)
SECRET_TABLES = {("wecom", "robot_webhook_keys"), ("dingtalk", "robot_webhooks")}


def _coerce(value: Any, typ: Any, key: str, secret: bool = False) -> Any:
    origin = get_origin(typ) or typ
    try:
        if typ is bool or origin is bool:
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off", ""):
                    return False
                raise ValueError(value)
            if not isinstance(value, bool):
                raise ValueError(value)
            return value
        if origin is int:
            if isinstance(value, bool):
                raise ValueError(value)
            return int(value)
        if origin is float:
            return float(value)
        if origin is Decimal:
            return Decimal(str(value))
        if origin is str:
            if not isinstance(value, (str, int)):
                raise ValueError(value)
            return str(value)
        if origin is tuple:
            if isinstance(value, str) and value.lstrip().startswith("["):
                value = json.loads(value)                  # from the environment: a JSON array
            elif isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            if not isinstance(value, (list, tuple)):
                raise ValueError(value)
            return tuple(value)
        if origin is dict:
            if isinstance(value, str):                     # from the environment: a JSON object
                value = json.loads(value)
            if not isinstance(value, dict):
                raise ValueError(value)
            return dict(value)
    except (ValueError, TypeError, InvalidOperation):
        got = "" if secret else f", got {value!r}"
        what = ('a table (from the environment: a JSON object like {"name": "value"})' if origin is dict
                else getattr(origin, '__name__', origin))
        raise ConfigError(f"{key}: expected {what}{got}") from None
    return value


def _from_env(env: dict[str, str], name: str) -> str | None:
    """``name``'s value from the environment, or from the file ``name_FILE`` names (a Docker or
    Kubernetes secret mounted as a file); None when neither is set."""
    path = env.get(name + "_FILE")
    if path is None:
        return env.get(name)
    if name in env:
        raise ConfigError(f"{name} and {name}_FILE are both set: keep one")
    try:
        return Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{name}_FILE: cannot read {path}: {type(e).__name__}") from None


def _build(cls: type, raw: dict, section: str, env: dict[str, str]) -> Any:
    hints = get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"[{section}] unknown key(s): {', '.join(sorted(unknown))}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        env_name = f"ARBOT_{section.upper()}_{f.name.upper()}"
        secret = (section, f.name) in SECRET_KEYS or (section, f.name) in SECRET_TABLES
        from_env = _from_env(env, env_name)
        if from_env is not None:
            kwargs[f.name] = _coerce(from_env, hints[f.name], env_name, secret)
        elif f.name in raw:
            kwargs[f.name] = _coerce(raw[f.name], hints[f.name], f"[{section}] {f.name}", secret)
    return cls(**kwargs)


def load_config(path: str | Path | None = None, env: dict[str, str] | None = None) -> Config:
    """Read TOML (if any), apply environment overrides, validate. Raises ConfigError."""
    env = dict(os.environ if env is None else env)
    raw: dict[str, Any] = {}
    path = path or env.get("ARBOT_CONFIG")
    if path:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"config file not found: {p}")
        try:
            raw = tomllib.loads(p.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{p}: not valid TOML: {e}") from None
    # a section's name is its field's, unless that is a Python keyword ([import] is ``imports``)
    sections = {f.metadata.get("section", f.name): f for f in dataclasses.fields(Config)}
    unknown = set(raw) - set(sections)
    if unknown:
        raise ConfigError(f"unknown section(s): {', '.join(sorted(unknown))}")
    kwargs: dict[str, Any] = {}
    hints = get_type_hints(Config)
    for name, f in sections.items():
        typ = hints[f.name]
        if dataclasses.is_dataclass(typ):
            section_raw = raw.get(name, {})
            if not isinstance(section_raw, dict):
                raise ConfigError(f"[{name}] must be a table")
            kwargs[f.name] = _build(typ, section_raw, name, env)
        elif name in raw:
            kwargs[f.name] = _coerce(raw[name], typ, name)
    if "ARBOT_DEMO" in env:
        kwargs["demo"] = _coerce(env["ARBOT_DEMO"], bool, "ARBOT_DEMO")
    cfg = Config(**kwargs)
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    try:
        ZoneInfo(cfg.company.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"[company] timezone: unknown timezone {cfg.company.timezone!r}") from None
    if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", cfg.collection.push_time):
        raise ConfigError(f"[collection] push_time: expected HH:MM, got {cfg.collection.push_time!r}")
    try:
        time.fromisoformat(cfg.collection.push_time)
    except ValueError:
        raise ConfigError(f"[collection] push_time: not a time: {cfg.collection.push_time!r}") from None
    b = list(cfg.aging.buckets)
    if not b or any(not isinstance(x, int) or x <= 0 for x in b) or b != sorted(set(b)):
        raise ConfigError(f"[aging] buckets: expected increasing positive whole days like [30, 60, 90], got {b!r}")
    if cfg.collection.reply_window_hours <= 0:
        raise ConfigError("[collection] reply_window_hours: must be > 0")
    if cfg.collection.push_max_items < 1:
        raise ConfigError("[collection] push_max_items: must be at least 1")
    for k, v in dataclasses.asdict(cfg.priority).items():
        if v < 0:
            raise ConfigError(f"[priority] {k}: a weight must be 0 or more, got {v}")
    try:
        commission_tiers(cfg)
    except ValueError as e:
        raise ConfigError(f"[commission] tiers: {e}") from None
    if cfg.collection.digest_max_items < 1:
        raise ConfigError("[collection] digest_max_items: must be at least 1")
    if not 0 <= cfg.outbox.reply_reserve < cfg.outbox.member_per_minute:
        raise ConfigError("[outbox] reply_reserve: must be at least 0 and less than member_per_minute")
    for key in ("extra_holidays", "extra_workdays"):
        for d in getattr(cfg.calendar, key):
            try:
                date.fromisoformat(str(d))
            except ValueError:
                raise ConfigError(f"[calendar] {key}: not an ISO date: {d!r}") from None
    if cfg.imports.date_order not in ("ymd", "mdy", "dmy"):
        raise ConfigError(f"[import] date_order: expected \"ymd\", \"mdy\" or \"dmy\", got {cfg.imports.date_order!r}")
    if cfg.log.level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigError(f"[log] level: expected DEBUG, INFO, WARNING or ERROR, got {cfg.log.level!r}")
    if cfg.log.stall_ms < 0:
        raise ConfigError(f"[log] stall_ms: expected 0 (off) or more milliseconds, got {cfg.log.stall_ms}")
    if not (1 <= cfg.server.port <= 65535):
        raise ConfigError(f"[server] port: must be 1..65535, got {cfg.server.port}")
    if cfg.dingtalk.mode not in ("http", "stream"):
        raise ConfigError(f"[dingtalk] mode: expected \"http\" or \"stream\", got {cfg.dingtalk.mode!r}")
    if cfg.wecom.enabled:
        for k in ("corp_id", "agent_id", "secret", "token", "encoding_aes_key"):
            if not getattr(cfg.wecom, k):
                raise ConfigError(f"[wecom] {k}: required when [wecom] enabled = true")
        if len(cfg.wecom.encoding_aes_key) != 43:
            raise ConfigError("[wecom] encoding_aes_key: must be the 43 characters shown in the WeCom console")
    if cfg.dingtalk.enabled:
        for k in ("app_key", "app_secret"):
            if not getattr(cfg.dingtalk, k):
                raise ConfigError(f"[dingtalk] {k}: required when [dingtalk] enabled = true")
        if cfg.dingtalk.card_template_id and cfg.dingtalk.mode == "http":
            if not cfg.dingtalk.card_callback_secret:
                raise ConfigError("[dingtalk] card_callback_secret: required for cards in HTTP mode "
                                  "(DingTalk signs each click with it; any long random string)")
            if not cfg.server.public_url:
                raise ConfigError("[server] public_url: required for DingTalk cards in HTTP mode "
                                  "(the card callback URL registered with DingTalk is built from it)")
    if cfg.feishu.mode not in ("http", "ws"):
        raise ConfigError(f"[feishu] mode: expected \"http\" or \"ws\", got {cfg.feishu.mode!r}")
    if cfg.feishu.id_type not in ("user_id", "open_id"):
        raise ConfigError(f"[feishu] id_type: expected \"user_id\" or \"open_id\", got {cfg.feishu.id_type!r}")
    if cfg.feishu.enabled:
        for k in ("app_id", "app_secret") + (("verification_token",) if cfg.feishu.mode == "http" else ()):
            if not getattr(cfg.feishu, k):
                raise ConfigError(f"[feishu] {k}: required when [feishu] enabled = true")
    for cur, rate in cfg.company.fx_rates.items():
        try:
            if Decimal(str(rate)) <= 0:
                raise InvalidOperation
        except InvalidOperation:
            raise ConfigError(f"[company] fx_rates.{cur}: expected a positive decimal string, got {rate!r}") from None
    if cfg.outbox.shared_rate_limits not in ("auto", "on", "off"):
        raise ConfigError(f"[outbox] shared_rate_limits: expected \"auto\", \"on\" or \"off\", "
                          f"got {cfg.outbox.shared_rate_limits!r}")
    if cfg.retention.outbox_days < 30 or cfg.retention.events_days < 7:
        raise ConfigError("[retention] outbox_days must be at least 30 and events_days at least 7 "
                          "(their keys keep a re-run or a platform's retry from sending twice)")
    if cfg.outbox.concurrency < 1 or cfg.outbox.max_attempts < 1:
        raise ConfigError("[outbox] concurrency and max_attempts must be >= 1")
    validate_policy(cfg)
    if not (1 <= cfg.reports.monthly_day <= 28):
        raise ConfigError(f"[reports] monthly_day: must be 1..28 (every month has it), got {cfg.reports.monthly_day}")
    lt = cfg.letters
    if not (1 <= lt.statement_day <= 28):
        raise ConfigError(f"[letters] statement_day: must be 1..28 (every month has it), got {lt.statement_day}")
    if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", cfg.retention.time):
        raise ConfigError(f"[retention] time: expected HH:MM, got {cfg.retention.time!r}")
    if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", lt.statement_time):
        raise ConfigError(f"[letters] statement_time: expected HH:MM, got {lt.statement_time!r}")
    if lt.confirm_days < 1 or lt.confirm_per_minute < 1:
        raise ConfigError("[letters] confirm_days and confirm_per_minute must be >= 1")
    if lt.template_dir and not Path(lt.template_dir).is_dir():
        raise ConfigError(f"[letters] template_dir: not a folder: {lt.template_dir}")
    for g in cfg.reports.manager_groups:
        if len(str(g).split(":")) not in (2, 3) or not all(str(g).split(":")):
            raise ConfigError(f"[reports] manager_groups: expected \"platform:group\" or \"platform:robot:name\", got {g!r}")


def commission_tiers(cfg: Config):
    """The configured commission tiers as domain tiers (ValueError when they are wrong)."""
    return tiers_from(cfg.commission.tiers)


def redacted(cfg: Config) -> dict:
    """The config as a dict with secrets masked, safe to log or show on /healthz."""
    out = dataclasses.asdict(cfg)
    for section, key in SECRET_KEYS:
        if out.get(section, {}).get(key):
            val = out[section][key]
            out[section][key] = re.sub(r"://[^@/]*@", "://***@", val) if key == "url" else "***"
    for section, name in SECRET_TABLES:
        out[section][name] = {k: "***" for k in out[section][name]}
    return out
