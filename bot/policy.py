"""Collection policy as configuration: reminders before the due date, the escalation ladder,
rules of conduct, credit control, late fees, the statute of limitations, and the customer
channels (SMTP e-mail, SMS). Every number is a default a company tunes in its TOML file.

The generic loader in ``bot.config`` builds these one level deep with scalar, tuple and dict
fields, so the ladder is a tuple of plain dicts and the per-grade reminders a dict of dicts;
``validate_policy`` checks their shape at start-up and the ``*_spec`` helpers hand out
normalised, typed views of them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import time
from decimal import Decimal, InvalidOperation

from bot.config_error import ConfigError
from domain.statute import DEMAND_EVIDENCE

ROLES = ("rep", "supervisor", "finance", "legal", "director", "manager")
DOCUMENTS = ("", "reminder", "confirmation", "lawyer_letter")
GRADES = ("A", "B", "C")

DEFAULT_PRE_DUE = {
    # A (strategic): 7 days before, the sales director personally
    "A": {"days": 7, "working_days": False, "notify": ["director"], "statement": False, "customer_message": False},
    # B (normal): 3 working days before, the account manager (rep), with a statement
    "B": {"days": 3, "working_days": True, "notify": ["rep"], "statement": True, "customer_message": False},
    # C (small): 10 days before, an automatic short message to the customer contact
    "C": {"days": 10, "working_days": False, "notify": [], "statement": False, "customer_message": True},
}

DEFAULT_LADDER = (
    {"days": 7, "notify": ["rep", "supervisor"], "customer_message": True},
    {"days": 15, "notify": ["finance"], "document": "confirmation"},
    {"days": 30, "notify": ["supervisor"], "action": "visit"},
    {"days": 60, "notify": ["legal"], "document": "lawyer_letter", "freeze": True},
    {"days": 90, "notify": ["legal"], "action": "litigation"},
)

PRE_DUE_KEYS = {"days", "working_days", "notify", "statement", "customer_message"}
STEP_KEYS = {"days", "notify", "document", "action", "freeze", "customer_message"}


@dataclass(frozen=True)
class PreDueSpec:
    grade: str
    days: int
    working_days: bool
    notify: tuple[str, ...]
    statement: bool
    customer_message: bool


@dataclass(frozen=True)
class StepSpec:
    days: int
    notify: tuple[str, ...] = ()
    document: str = ""
    action: str = ""
    freeze: bool = False
    customer_message: bool = False

    @property
    def name(self) -> str:
        return f"d{self.days}"


@dataclass(frozen=True)
class PolicyConfig:
    director: str = ""                 # person id of the sales director (grade A pre-due reminders)
    statement_days: int = 15           # statement to the customer contact this many days before due; 0: off
    # a customer whose payment profile shows a month-end habit (domain/payment_profile.py) is
    # reminded this many working days before the month's last working day, instead of before each
    # due date (a date it ignores: it pays in its month-end run); 0: off, everyone as by grade
    month_end_days: int = 3
    reminder_time: str = "09:30"       # customer_reminders job (working days)
    escalation_time: str = "09:30"     # escalations job (daily)
    pre_due: dict = field(default_factory=lambda: {k: dict(v) for k, v in DEFAULT_PRE_DUE.items()})
    ladder: tuple = DEFAULT_LADDER

    def pre_due_spec(self, grade: str) -> PreDueSpec | None:
        """The reminder for a grade, missing keys taken from the defaults (None: no such grade)."""
        raw = self.pre_due.get(grade)
        if raw is None:
            return None
        base = DEFAULT_PRE_DUE.get(grade, {"days": 0, "working_days": False, "notify": [], "statement": False,
                                            "customer_message": False})
        merged = {**base, **raw}
        return PreDueSpec(grade=grade, days=int(merged["days"]), working_days=bool(merged["working_days"]),
                          notify=tuple(merged["notify"]), statement=bool(merged["statement"]),
                          customer_message=bool(merged["customer_message"]))

    def steps(self) -> list[StepSpec]:
        """The ladder, in order of days overdue."""
        out = [StepSpec(days=int(s["days"]), notify=tuple(s.get("notify", ())), document=str(s.get("document", "")),
                        action=str(s.get("action", "")), freeze=bool(s.get("freeze", False)),
                        customer_message=bool(s.get("customer_message", False))) for s in self.ladder]
        return sorted(out, key=lambda s: s.days)


@dataclass(frozen=True)
class ConductConfig:
    start: str = "09:00"               # customer messages only from ...
    end: str = "18:00"                 # ... until (exclusive), company timezone
    working_days_only: bool = True     # by the Chinese calendar, make-up working days (调休) included
    max_messages: int = 1              # per customer ...
    per_days: int = 3                  # ... in this many calendar days
    staff_hours: bool = True           # ladder/reminder notifications to staff also wait for working hours

    @property
    def start_time(self) -> time:
        return time.fromisoformat(self.start)

    @property
    def end_time(self) -> time:
        return time.fromisoformat(self.end)


@dataclass(frozen=True)
class CreditConfig:
    yellow: Decimal = Decimal("0.7")          # usage = open balance / credit limit
    red: Decimal = Decimal("0.9")             # red: new shipments need finance approval
    freeze_on_red: bool = True                # red sets the customer's status to "frozen"
    key_invoice_amount: Decimal = Decimal("50000")   # a single invoice above this: key account (重点客户)
    key_consecutive_overdue: int = 3          # this many consecutive overdue invoices: key account
    check_time: str = "09:10"                 # credit_watch job (daily)


@dataclass(frozen=True)
class LateFeeConfig:
    # daily rate by days overdue: the tier with the highest from_day <= day applies
    tiers: tuple = ({"from_day": 1, "rate": "0.0005"}, {"from_day": 31, "rate": "0.001"})
    in_letters: bool = True                   # show the estimate in letters (never booked to the ledger)
    # at most this share of the overdue principal (民法典 第五百八十五条; courts use 30%); "0": no cap
    cap_ratio: Decimal = Decimal("0.3")


@dataclass(frozen=True)
class StatuteConfig:
    years: int = 3                     # from the day after the due date
    cross_border_years: int = 4        # customers marked cross_border
    warn_days: int = 90                # warn legal this many days before expiry (once per expiry date)
    roll_to_workday: bool = True       # a last day on a holiday/weekend moves to the next working day
    check_time: str = "09:20"          # statute_watch job (daily)
    # the proofs that a demand reached the debtor and so interrupts the period (domain/statute.py):
    # customer_reply, registered_letter, lawsuit; email_accepted (the SMTP server took it) and
    # message_sent (a group robot took it) may be added, at the company's own risk. The debtor's
    # payments and signed acknowledgements always interrupt.
    notice_evidence: tuple = ("customer_reply", "registered_letter", "lawsuit")


@dataclass(frozen=True)
class SmtpConfig:
    host: str = ""                     # empty: e-mail channel off
    port: int = 25
    username: str = ""
    password: str = ""                 # secret: ARBOT_SMTP_PASSWORD
    from_addr: str = ""
    from_name: str = ""                # display name; empty: [company] name
    starttls: bool = False
    use_tls: bool = False              # implicit TLS (port 465)
    timeout_seconds: float = 30.0

    @property
    def enabled(self) -> bool:
        return bool(self.host)


SMS_PROVIDERS = ("aliyun", "tencent", "generic")
# where each provider's API answers (api_base overrides it: a proxy, or a test's fake)
SMS_ENDPOINTS = {"aliyun": "https://dysmsapi.aliyuncs.com", "tencent": "https://sms.tencentcloudapi.com"}
SMS_REGIONS = {"aliyun": "cn-hangzhou", "tencent": "ap-guangzhou"}


@dataclass(frozen=True)
class SmsConfig:
    # "aliyun" (dysmsapi SendSms), "tencent" (SMS API 2021-01-11 SendSms), or "generic": a relay of
    # your own speaking this bot's POST {api_base}/sms/send. Empty: "generic" if api_base is set
    # (configurations from before the providers), else SMS is off.
    provider: str = ""
    api_base: str = ""                 # empty: the provider's own endpoint
    access_key_id: str = ""            # Aliyun AccessKey ID / Tencent SecretId
    access_key_secret: str = ""        # secret: ARBOT_SMS_ACCESS_KEY_SECRET (Aliyun AccessKey secret / Tencent SecretKey)
    sdk_app_id: str = ""               # Tencent: the SMS application's SmsSdkAppId (1400...)
    region: str = ""                   # empty: cn-hangzhou (Aliyun) / ap-guangzhou (Tencent)
    app_id: str = ""                   # generic relay only
    app_key: str = ""                  # generic relay only; secret: ARBOT_SMS_APP_KEY (HMAC-SHA256 key)
    sign_name: str = ""                # the approved signature (短信签名), e.g. the company short name
    # approved template ids by message kind
    templates: dict = field(default_factory=lambda: {"pre_due": "", "statement": "", "overdue": "", "letter": ""})
    # the variables each template takes, by kind, in the template's order: Aliyun fills ${name}
    # by name (all of the message's variables when a kind is not listed), Tencent fills {1}, {2}...
    # by position, so it needs the order. Names: customer, invoice, contract, amount, currency,
    # due_date, days.
    template_params: dict = field(default_factory=dict)
    timeout_seconds: float = 15.0

    @property
    def kind(self) -> str:
        return self.provider or ("generic" if self.api_base else "")

    @property
    def enabled(self) -> bool:
        return bool(self.kind)

    @property
    def endpoint(self) -> str:
        return (self.api_base or SMS_ENDPOINTS.get(self.kind, "")).rstrip("/")

    @property
    def region_name(self) -> str:
        return self.region or SMS_REGIONS.get(self.kind, "")


SMS_PARAM_NAMES = ("customer", "invoice", "contract", "amount", "currency", "due_date", "days")


def validate_sms(s: SmsConfig) -> None:
    if s.provider and s.provider not in SMS_PROVIDERS:
        raise ConfigError(f"[sms] provider: expected one of {', '.join(SMS_PROVIDERS)}, got {s.provider!r}")
    if not s.enabled:
        return
    required = {"aliyun": ("access_key_id", "access_key_secret", "sign_name"),
                "tencent": ("access_key_id", "access_key_secret", "sdk_app_id", "sign_name"),
                "generic": ("api_base", "app_id", "app_key", "sign_name")}[s.kind]
    for key in required:
        if not getattr(s, key):
            raise ConfigError(f"[sms] {key}: required with provider = \"{s.kind}\"")
    for kind, names in s.template_params.items():
        if not isinstance(names, (list, tuple)) or any(n not in SMS_PARAM_NAMES for n in names):
            raise ConfigError(f"[sms] template_params.{kind}: expected a list of {', '.join(SMS_PARAM_NAMES)}")
    if s.kind == "tencent":
        for kind, template in s.templates.items():
            if template and kind not in s.template_params:
                raise ConfigError(f"[sms] template_params.{kind}: Tencent fills a template by position; "
                                  f"list the variables of template {template!r} in order")


def _hhmm(value: str, key: str) -> None:
    if not isinstance(value, str) or not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
        raise ConfigError(f"{key}: expected HH:MM, got {value!r}")


def _roles(value, key: str) -> None:
    if not isinstance(value, (list, tuple)) or any(r not in ROLES for r in value):
        raise ConfigError(f"{key}: expected a list of roles from {', '.join(ROLES)}, got {value!r}")


def validate_policy(cfg) -> None:
    """Shape checks of the policy sections (called from ``bot.config.validate``)."""
    validate_sms(cfg.sms)
    p = cfg.policy
    for key in ("reminder_time", "escalation_time"):
        _hhmm(getattr(p, key), f"[policy] {key}")
    if p.statement_days < 0:
        raise ConfigError("[policy] statement_days: must be >= 0")
    if isinstance(p.month_end_days, bool) or not isinstance(p.month_end_days, int) or not 0 <= p.month_end_days <= 15:
        raise ConfigError(f"[policy] month_end_days: expected a whole number of working days from 0 to 15, "
                          f"got {p.month_end_days!r}")
    for grade, raw in p.pre_due.items():
        key = f"[policy] pre_due.{grade}"
        if not isinstance(raw, dict):
            raise ConfigError(f"{key}: expected a table like {{ days = 7, notify = [\"director\"] }}")
        unknown = set(raw) - PRE_DUE_KEYS
        if unknown:
            raise ConfigError(f"{key}: unknown key(s): {', '.join(sorted(unknown))}")
        if "days" in raw and (not isinstance(raw["days"], int) or isinstance(raw["days"], bool) or raw["days"] < 0):
            raise ConfigError(f"{key}.days: expected a whole number >= 0, got {raw['days']!r}")
        if "notify" in raw:
            _roles(raw["notify"], f"{key}.notify")
    if not p.ladder:
        raise ConfigError("[policy] ladder: at least one step")
    seen: set[int] = set()
    for i, raw in enumerate(p.ladder):
        key = f"[policy] ladder[{i}]"
        if not isinstance(raw, dict):
            raise ConfigError(f"{key}: expected a table like {{ days = 7, notify = [\"rep\"] }}")
        unknown = set(raw) - STEP_KEYS
        if unknown:
            raise ConfigError(f"{key}: unknown key(s): {', '.join(sorted(unknown))}")
        days = raw.get("days")
        if not isinstance(days, int) or isinstance(days, bool) or days <= 0:
            raise ConfigError(f"{key}.days: expected a whole number of days overdue > 0, got {days!r}")
        if days in seen:
            raise ConfigError(f"{key}.days: two steps at {days} days")
        seen.add(days)
        _roles(raw.get("notify", []), f"{key}.notify")
        if raw.get("document", "") not in DOCUMENTS:
            raise ConfigError(f"{key}.document: expected one of {DOCUMENTS[1:]}, got {raw.get('document')!r}")
        if not isinstance(raw.get("action", ""), str):
            raise ConfigError(f"{key}.action: expected text")
        for flag in ("freeze", "customer_message"):
            if not isinstance(raw.get(flag, False), bool):
                raise ConfigError(f"{key}.{flag}: expected true or false")
    c = cfg.conduct
    _hhmm(c.start, "[conduct] start")
    _hhmm(c.end, "[conduct] end")
    if c.start_time >= c.end_time:
        raise ConfigError("[conduct] start must be before end")
    if c.max_messages < 1 or c.per_days < 1:
        raise ConfigError("[conduct] max_messages and per_days must be >= 1")
    cr = cfg.credit
    if not (Decimal(0) < cr.yellow < cr.red):
        raise ConfigError("[credit] expected 0 < yellow < red (shares of the credit limit, e.g. 0.7 and 0.9)")
    if cr.key_consecutive_overdue < 1 or cr.key_invoice_amount <= 0:
        raise ConfigError("[credit] key_invoice_amount must be > 0 and key_consecutive_overdue >= 1")
    _hhmm(cr.check_time, "[credit] check_time")
    if not cfg.late_fees.tiers:
        raise ConfigError("[late_fees] tiers: at least one tier")
    prev = 0
    for i, t in enumerate(cfg.late_fees.tiers):
        key = f"[late_fees] tiers[{i}]"
        if not isinstance(t, dict) or set(t) != {"from_day", "rate"}:
            raise ConfigError(f"{key}: expected {{ from_day = 1, rate = \"0.0005\" }}")
        if not isinstance(t["from_day"], int) or t["from_day"] <= prev:
            raise ConfigError(f"{key}.from_day: expected increasing whole days starting at 1")
        if i == 0 and t["from_day"] != 1:
            raise ConfigError(f"{key}.from_day: the first tier starts at day 1")
        prev = t["from_day"]
        try:
            if isinstance(t["rate"], float) or Decimal(str(t["rate"])) < 0:
                raise InvalidOperation
        except InvalidOperation:
            raise ConfigError(f"{key}.rate: expected a decimal string like \"0.0005\" (per day), got {t['rate']!r}") from None
    if cfg.late_fees.cap_ratio < 0:
        raise ConfigError("[late_fees] cap_ratio: a share of the principal like \"0.3\", or \"0\" for no cap")
    st = cfg.statute
    if st.years < 1 or st.cross_border_years < 1 or st.warn_days < 0:
        raise ConfigError("[statute] years and cross_border_years must be >= 1, warn_days >= 0")
    _hhmm(st.check_time, "[statute] check_time")
    unknown = [e for e in st.notice_evidence if e not in DEMAND_EVIDENCE]
    if unknown:
        raise ConfigError(f"[statute] notice_evidence: unknown {', '.join(map(str, unknown))}; "
                          f"choose from {', '.join(DEMAND_EVIDENCE)}")
    if cfg.smtp.enabled and not cfg.smtp.from_addr:
        raise ConfigError("[smtp] from_addr: required when [smtp] host is set")
    if not (1 <= cfg.smtp.port <= 65535):
        raise ConfigError(f"[smtp] port: must be 1..65535, got {cfg.smtp.port}")
    # [sms] is checked per provider by validate_sms
