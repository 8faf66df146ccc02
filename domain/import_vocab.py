"""Parsing vocabularies for spreadsheet imports: column headers, roles, grades, currencies.

Chinese ledgers exported from ERP systems, WPS or hand-kept Excel sheets name the same column
in many ways (客户名称 / 客户 / 付款单位); these tables map them to one field name. The
Chinese words here are *input vocabulary*, never messages shown to anyone.
"""
from __future__ import annotations

import re

from domain.dates import half_width

KINDS = ("people", "customers", "receivables", "payments")

# field → accepted headers (first one is the canonical English header).
HEADERS: dict[str, dict[str, tuple[str, ...]]] = {
    "people": {
        "id": ("id", "person_id", "employee_id", "员工编号", "工号", "员工ID", "编号"),
        "name": ("name", "姓名", "员工姓名", "名字"),
        "role": ("role", "角色", "岗位", "职务"),
        "supervisor": ("supervisor", "上级", "直属上级", "上级主管", "汇报对象"),
        "team": ("team", "团队", "部门", "小组"),
        # then one column per chat platform, "<platform>_userid" (see _with_accounts below)
        "mobile": ("mobile", "phone", "手机", "手机号", "手机号码", "电话"),
        "email": ("email", "邮箱", "电子邮箱", "邮件"),
    },
    "customers": {
        "code": ("code", "customer_code", "客户编码", "客户编号", "客户代码"),
        "name": ("name", "customer_name", "客户名称", "客户", "客户全称"),
        "grade": ("grade", "信用等级", "客户等级", "等级", "客户级别"),
        "credit_limit": ("credit_limit", "信用额度", "额度", "授信额度"),
        "rep": ("rep", "业务员", "负责业务员", "销售", "负责人"),
        "contact_name": ("contact_name", "contact", "联系人", "联系人姓名"),
        "contact_mobile": ("contact_mobile", "联系电话", "联系人电话", "联系人手机", "手机", "电话"),
        "contact_email": ("contact_email", "email", "邮箱", "联系人邮箱", "电子邮箱"),
        "region": ("region", "区域", "地区", "片区"),
        "cross_border": ("cross_border", "跨境", "是否跨境", "跨境客户"),
        "late_fee_rate": ("late_fee_rate", "滞纳金日利率", "滞纳金", "逾期违约金日利率", "违约金日利率"),
    },
    "receivables": {
        "invoice_no": ("invoice_no", "invoice", "发票号", "发票号码", "单号", "送货单号", "单据号"),
        "contract_no": ("contract_no", "contract", "合同编号", "合同号"),
        "customer": ("customer", "客户名称", "客户", "客户编码"),
        "issue_date": ("issue_date", "交易日期", "开票日期", "发货日期", "日期"),
        "due_date": ("due_date", "到期日", "到期日期", "应收日期"),
        "amount": ("amount", "应收金额", "金额", "发票金额"),
        "currency": ("currency", "币种", "币别"),
        "rep": ("rep", "业务员", "负责业务员", "销售"),
        "terms": ("terms", "付款条件", "账期", "付款方式"),
        # a credit note (红字发票, negative amount) names the invoice it corrects
        "original_invoice": ("original_invoice", "原发票号", "蓝字发票号", "原蓝字发票号", "对应蓝字发票号", "原发票号码"),
    },
    "payments": {
        "customer": ("customer", "客户名称", "客户", "客户编码", "付款单位", "付款方"),
        "amount": ("amount", "金额", "到账金额", "收款金额", "回款金额"),
        "paid_on": ("paid_on", "date", "到账日期", "收款日期", "回款日期", "付款日期", "日期"),
        "reference": ("reference", "ref", "流水号", "银行流水号", "交易流水号", "回单号"),
        "invoice_no": ("invoice_no", "invoice", "发票号", "发票号码", "单号"),
        "currency": ("currency", "币种", "币别"),
        # paid with an acceptance bill (承兑汇票): a row with a bill number records the bill
        "bill_no": ("bill_no", "票据号", "票据号码", "汇票号码", "汇票号", "票号", "承兑汇票号码"),
        "bill_kind": ("bill_kind", "票据种类", "票据类型", "汇票种类", "汇票类型", "票据类别"),
        "acceptor": ("acceptor", "承兑人", "承兑行", "承兑银行", "承兑人名称", "付款行"),
        "maturity": ("maturity", "汇票到期日", "票据到期日", "到期日", "到期日期"),
    },
}

# ERP exports carry several columns for one field: 用友 U8's 销售发票列表 has 客户编码 and 客户简称,
# 原币价税合计 and 本币价税合计 and 原币金额 (without tax); 金蝶云星空's 应收单 has 单据编号 and 价税合计
# and 价税合计本位币. Per field, the tiers in order of preference (headers of one tier mean the
# same thing: two of them in one file are a clash, refused); a header of the field in no tier
# comes last. Every header here is also accepted on its own (it is added to HEADERS below).
#   amounts: with tax (价税合计, what the customer owes) before without (金额 in U8 is 无税金额),
#   the document's currency (原币) before the company's (本币), which the 币种 column would belie.
PREFER: dict[str, dict[str, tuple[tuple[str, ...], ...]]] = {
    "customers": {
        "code": (("code", "customer_code", "客户编码", "客户编号", "客户代码"),),
        "name": (("name", "customer_name", "客户名称", "客户全称"), ("客户",), ("客户简称",)),
        "rep": (("rep", "业务员", "负责业务员", "销售员"), ("专管业务员", "分管业务员", "销售", "负责人")),
    },
    "receivables": {
        "invoice_no": (("invoice_no", "invoice", "发票号", "发票号码"),
                       ("单据编号", "单据号", "单据编码", "单号", "应收单号"), ("送货单号", "发货单号")),
        "customer": (("customer", "客户编码", "客户编号", "客户代码"),
                     ("客户名称", "客户全称", "客户", "购货单位", "往来单位", "结算客户"), ("客户简称",)),
        "issue_date": (("issue_date", "开票日期", "发票日期"),
                       ("单据日期", "业务日期", "交易日期", "发货日期", "记账日期"), ("日期",)),
        "due_date": (("due_date", "到期日", "到期日期", "应收日期", "收款到期日"), ("收款期限", "收款日期")),
        "amount": (("amount", "价税合计", "原币价税合计", "含税金额"),
                   ("应收金额", "原币应收金额", "发票金额", "开票金额"),
                   ("本币价税合计", "价税合计本位币", "本位币价税合计"), ("本币应收金额",),
                   ("原币金额",), ("本币金额",), ("金额",)),
        "currency": (("currency", "币种", "币别", "原币币种"),),
        "rep": (("rep", "业务员", "负责业务员", "销售员"), ("销售", "专管业务员")),
        "terms": (("terms", "付款条件", "收款条件", "账期"), ("付款方式", "结算方式")),
    },
    "payments": {
        "customer": (("customer", "客户编码", "客户编号"),
                     ("客户名称", "客户", "付款单位", "付款方", "往来单位"), ("客户简称",)),
        "amount": (("amount", "到账金额", "收款金额", "回款金额", "原币金额"), ("本币金额",), ("金额",)),
        "paid_on": (("paid_on", "date", "到账日期", "收款日期", "回款日期", "付款日期"),
                    ("单据日期", "业务日期"), ("日期",)),
        "reference": (("reference", "ref", "流水号", "银行流水号", "交易流水号", "回单号"),
                      ("单据编号", "收款单号")),
    },
}
for _kind, _fields in PREFER.items():
    for _field, _tiers in _fields.items():
        _known = HEADERS[_kind][_field]
        HEADERS[_kind][_field] = _known + tuple(a for t in _tiers for a in t if a not in _known)

# The natural key that makes re-importing a file idempotent.
KEYS = {"people": "id", "customers": "code", "receivables": "invoice_no", "payments": "reference"}

# field → value type; a trailing "!" marks a required column (and a required cell). "signed": an
# amount that may be negative (a receivables file's credit notes); "amount" refuses a negative.
# A payment's bank reference is required: without it a re-import would book the money twice.
FIELDS: dict[str, dict[str, str]] = {
    "people": {"id": "text!", "name": "text!", "role": "role!", "supervisor": "text", "team": "text",
               "mobile": "text", "email": "text"},
    "customers": {"code": "text!", "name": "text!", "grade": "grade", "credit_limit": "money",
                  "rep": "text", "contact_name": "text", "contact_mobile": "text",
                  "contact_email": "text", "region": "text", "cross_border": "bool", "late_fee_rate": "late_fee"},
    "receivables": {"invoice_no": "text!", "contract_no": "text", "customer": "text!",
                    "issue_date": "date!", "due_date": "date!", "amount": "signed!",
                    "currency": "currency", "rep": "text", "terms": "text", "original_invoice": "text"},
    "payments": {"customer": "text!", "amount": "amount!", "paid_on": "date!", "reference": "text!",
                 "invoice_no": "text", "currency": "currency",
                 "bill_no": "text", "bill_kind": "text", "acceptor": "text", "maturity": "date"},
}

# Sheet names tried before falling back to the first sheet of a workbook.
SHEET_NAMES = {
    "people": ("people", "人员", "员工", "人员名单", "员工名单"),
    "customers": ("customers", "客户", "客户档案", "客户名单"),
    "receivables": ("receivables", "应收", "应收账款", "应收台账", "台账", "发票"),
    "payments": ("payments", "回款", "收款", "到账", "银行流水"),
}

ROLE_WORDS = {
    "rep": ("rep", "sales", "业务员", "销售", "销售专员", "销售代表", "业务代表", "客户经理"),
    "supervisor": ("supervisor", "主管", "销售主管", "销售经理", "区域经理"),
    "finance": ("finance", "财务", "会计", "财务专员", "出纳"),
    "legal": ("legal", "法务", "法务专员"),
    "manager": ("manager", "总经理", "销售总监", "经理", "总监", "副总经理"),
    "auditor": ("auditor", "审计", "审计专员"),
    "admin": ("admin", "administrator", "管理员", "系统管理员"),
}

CURRENCY_WORDS = {
    "CNY": ("cny", "rmb", "人民币", "元", "¥", "￥"),
    "USD": ("usd", "us$", "$", "美元", "美金"),
    "EUR": ("eur", "€", "欧元"),
    "HKD": ("hkd", "hk$", "港币", "港元"),
    "JPY": ("jpy", "日元"),
    "GBP": ("gbp", "£", "英镑"),
}

TRUE_WORDS = ("是", "y", "yes", "true", "1", "t", "√", "跨境")
FALSE_WORDS = ("否", "n", "no", "false", "0", "f", "×", "", "-")


def norm_header(text: object) -> str:
    """Compare headers the way a person reads them: width, case, spaces, underscores and the
    ``*`` that templates put on required columns do not matter."""
    s = half_width(str(text or "")).strip().lower()
    s = s.strip("*").strip()
    return re.sub(r"[\s_\-]+", "", s)


def _drop_bracket(s: str) -> str:
    """``应收金额(元)`` → ``应收金额``; ``(``/``（`` already unified by half_width."""
    return re.sub(r"\([^)]*\)$", "", s).strip("*").strip()


def _with_accounts(fields: dict, accounts: dict) -> dict:
    """``fields`` with the account columns after "team" (where people.csv has always had them)."""
    out = {}
    for name, value in fields.items():
        out[name] = value
        if name == "team":
            out.update(accounts)
    return out


# A person's user id on each chat platform that knows people by one: ``<platform>_userid`` and
# its header words. The platforms live above this package (bot/channels/), so each one adds its
# column here when it registers (``bot.core.channel.register``) instead of this module importing
# them: the vocabulary stays below storage, which parses people files with it.
ACCOUNT_COLUMNS: dict[str, tuple[str, ...]] = {}
_PEOPLE_HEADERS, _PEOPLE_FIELDS = dict(HEADERS["people"]), dict(FIELDS["people"])
_HEADER_INDEX: dict[str, dict[str, str]] = {}


_TIER_INDEX: dict[str, dict[str, int]] = {}


def _index(kind: str) -> None:
    _HEADER_INDEX[kind] = {norm_header(alias): field for field, aliases in HEADERS[kind].items() for alias in aliases}
    _TIER_INDEX[kind] = {norm_header(alias): i for tiers in PREFER.get(kind, {}).values()
                         for i, tier in enumerate(tiers) for alias in tier}


def add_account_column(field: str, headers: tuple[str, ...] = ()) -> None:
    """people.csv gets a column ``field`` (canonical header, then ``headers``) holding a person's
    user id on a chat platform; storage turns it into a person_accounts row."""
    ACCOUNT_COLUMNS[field] = (field, *headers)
    # in place: importers hold these very dicts
    HEADERS["people"].clear()
    HEADERS["people"].update(_with_accounts(_PEOPLE_HEADERS, ACCOUNT_COLUMNS))
    FIELDS["people"].clear()
    FIELDS["people"].update(_with_accounts(_PEOPLE_FIELDS, {f: "text" for f in ACCOUNT_COLUMNS}))
    _index("people")


for _kind in HEADERS:
    _index(_kind)

_ROLE_INDEX = {norm_header(w): role for role, words in ROLE_WORDS.items() for w in words}
_CURRENCY_INDEX = {norm_header(w): code for code, words in CURRENCY_WORDS.items() for w in words}


def header_field(kind: str, header: object) -> str | None:
    """The field a header names for this kind of file, or None if it is not one we know."""
    index = _HEADER_INDEX[kind]
    s = norm_header(header)
    if s in index:
        return index[s]
    return index.get(_drop_bracket(s))


def header_rank(kind: str, header: object) -> tuple[str, int] | None:
    """(field, tier) of a header: the lower the tier, the more preferred the column (see PREFER)."""
    field = header_field(kind, header)
    if field is None:
        return None
    tiers = _TIER_INDEX[kind]
    s = norm_header(header)
    tier = tiers.get(s, tiers.get(_drop_bracket(s)))
    return field, (tier if tier is not None else len(PREFER.get(kind, {}).get(field, ())))


def role_of(text: str) -> str | None:
    return _ROLE_INDEX.get(norm_header(text))


def grade_of(text: str) -> str | None:
    s = norm_header(text).upper().rstrip("级类")
    return s if s in ("A", "B", "C") else None


def currency_of(text: str) -> str | None:
    s = norm_header(text)
    if s in _CURRENCY_INDEX:
        return _CURRENCY_INDEX[s]
    return s.upper() if re.fullmatch(r"[a-z]{3}", s) else None   # any ISO 4217-looking code


def bool_of(text: str) -> bool | None:
    s = norm_header(text)
    if s in TRUE_WORDS:
        return True
    if s in FALSE_WORDS:
        return False
    return None
