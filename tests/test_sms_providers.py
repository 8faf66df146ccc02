"""Customer SMS through Alibaba Cloud and Tencent Cloud, on loopback against fakes that verify
each provider's documented signature and refuse what the provider refuses."""
from __future__ import annotations

import dataclasses
import logging
from datetime import datetime, timezone
from urllib.parse import urlencode

import aiohttp
import pytest

from bot.channels import sms_aliyun, sms_tencent
from bot.channels.errors import PermanentDeliveryError, RateLimitedError, TransientDeliveryError
from bot.channels.sms import SmsChannel
from bot.clock import FixedClock
from bot.config import ConfigError, load_config, redacted
from bot.core.messages import OutgoingMessage
from bot.policy import SmsConfig
from tests.conftest import at
from tests.fakes.aliyun_sms_server import FakeAliyunSms
from tests.fakes.tencent_sms_server import FakeTencentSms
from tests.harness import Bot
from tests.test_email import _ledger

KEY_ID, KEY_SECRET = "LTAI5tFakeKeyId", "aliyun-secret-never-logged"
SECRET_ID, SECRET_KEY = "AKIDfakeSecretId", "tencent-secret-never-logged"
PARAMS = {"customer": "上海恒信机电有限公司", "invoice": "INV-9", "contract": "HT-2026-009", "amount": "20,000.00",
          "currency": "CNY", "due_date": "2026-11-13", "days": "7"}
ORDER = ["customer", "invoice", "amount", "days"]


def sms(phone: str, params: dict | None = None) -> OutgoingMessage:
    return OutgoingMessage(platform="sms", target_kind="sms", target=phone, text="（预览）", format="text",
                           extra={"customer_message": "ladder:INV-9:d7", "sms_template": "overdue",
                                  "sms_params": dict(PARAMS if params is None else params)})


# -- the documented test vectors ------------------------------------------------------------

def test_aliyun_signature_matches_the_sms_documents_example():
    # dysmsapi's worked example (AccessKeyId testId, secret testSecret)
    params = {"AccessKeyId": "testId", "Action": "SendSms", "Format": "XML", "OutId": "123",
              "PhoneNumbers": "15300000001", "RegionId": "cn-hangzhou", "SignName": "阿里云短信测试专用",
              "SignatureMethod": "HMAC-SHA1", "SignatureNonce": "45e25e9b-0a6f-4070-8c85-2956eda1b466",
              "SignatureVersion": "1.0", "TemplateCode": "SMS_71390007", "TemplateParam": '{"customer":"test"}',
              "Timestamp": "2017-07-12T02:42:19Z", "Version": "2017-05-25"}
    assert sms_aliyun.signature("GET", params, "testSecret") == "zJDF+Lrzhj/ThnlvIToysFRq6t4="
    assert sms_aliyun.percent("a b*~") == "a%20b%2A~"


def test_tencent_signature_matches_the_api3_documents_example():
    # the API 3.0 signature page's worked example (CVM DescribeInstances, POST JSON)
    body = b'{"Limit": 1, "Filters": [{"Values": ["\\u672a\\u547d\\u540d"], "Name": "instance-name"}]}'
    canonical = sms_tencent.canonical_request(body, "cvm.tencentcloudapi.com")
    assert sms_tencent.signature("Gu5t9xGARNpq86cd98joQYCN3EXAMPLE", 1551113065, canonical, service="cvm") == \
        "72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"
    # the scope's date is UTC: 00:44 in Beijing on the 26th is still the 25th
    assert sms_tencent.utc_date(1551113065) == "2019-02-25"
    assert sms_tencent.phone_e164("13900000000") == "+8613900000000"


# -- Alibaba Cloud --------------------------------------------------------------------------

@pytest.fixture
async def aliyun():
    async with FakeAliyunSms(keys={KEY_ID: KEY_SECRET}, templates={"SMS_OVERDUE_1": set(ORDER)}) as fake:
        yield fake


def aliyun_config(fake, **extra) -> SmsConfig:
    return SmsConfig(provider="aliyun", api_base=fake.url, access_key_id=KEY_ID, access_key_secret=KEY_SECRET,
                     sign_name="示例公司", templates={"overdue": "SMS_OVERDUE_1"},
                     template_params={"overdue": ORDER}, **extra)


async def test_aliyun_sends_a_signed_template_message(aliyun, caplog):
    caplog.set_level(logging.DEBUG)
    await SmsChannel(aliyun_config(aliyun)).deliver(sms("13900000000"))
    [sent] = aliyun.sent
    assert sent["PhoneNumbers"] == "13900000000" and sent["SignName"] == "示例公司"
    assert sent["TemplateCode"] == "SMS_OVERDUE_1" and sent["RegionId"] == "cn-hangzhou"
    assert sent["TemplateParam"] == ('{"customer":"上海恒信机电有限公司","invoice":"INV-9",'
                                     '"amount":"20,000.00","days":"7"}')
    assert KEY_SECRET not in caplog.text


async def test_aliyun_refusals_map_to_what_the_outbox_does(aliyun):
    channel = SmsChannel(aliyun_config(aliyun))
    await channel.deliver(sms("13900000000"))
    # the same number again within the minute: flow control, retried after the minute
    with pytest.raises(RateLimitedError) as e:
        await channel.deliver(sms("13900000000"))
    assert e.value.code == "isv.BUSINESS_LIMIT_CONTROL" and e.value.retry_after == 60
    with pytest.raises(PermanentDeliveryError) as e:
        await channel.deliver(sms("12345678"))
    assert e.value.code == "isv.MOBILE_NUMBER_ILLEGAL"
    # the configuration names fewer variables than the approved template takes
    short = SmsChannel(dataclasses.replace(aliyun_config(aliyun), template_params={"overdue": ["customer"]}))
    with pytest.raises(PermanentDeliveryError) as e:
        await short.deliver(sms("13900000002"))
    assert e.value.code == "isv.TEMPLATE_MISSING_PARAMETERS"
    # a message without a value the template needs is not sent with a blank
    with pytest.raises(PermanentDeliveryError) as e:
        await channel.deliver(sms("13900000002", {k: v for k, v in PARAMS.items() if k != "days"}))
    assert e.value.code == "template_params"
    aliyun.next_code = "isp.SYSTEM_ERROR"
    with pytest.raises(TransientDeliveryError) as e:
        await channel.deliver(sms("13900000003"))
    assert not isinstance(e.value, (PermanentDeliveryError, RateLimitedError))
    # a wrong secret: the fake recomputes the signature and refuses; never worth retrying
    wrong = SmsChannel(dataclasses.replace(aliyun_config(aliyun), access_key_secret="not-the-secret"))
    with pytest.raises(PermanentDeliveryError) as e:
        await wrong.deliver(sms("13900000004"))
    assert e.value.code == "SignatureDoesNotMatch" and "not-the-secret" not in e.value.reason
    # a server clock 20 minutes off
    skewed = SmsChannel(aliyun_config(aliyun), clock=FixedClock(at("2020-01-01 10:00")))
    with pytest.raises(PermanentDeliveryError) as e:
        await skewed.deliver(sms("13900000005"))
    assert e.value.code == "InvalidTimeStamp.Expired"
    assert len(aliyun.sent) == 1


async def test_fake_aliyun_refuses_a_replayed_or_tampered_request(aliyun):
    """The fake is the provider's stand-in: a captured request sent again (same nonce) or with
    one parameter changed does not go."""
    form = sms_aliyun.request_params(access_key_id=KEY_ID, access_key_secret=KEY_SECRET, region="cn-hangzhou",
                                     phone="13900000009", sign_name="示例公司", template_code="SMS_OVERDUE_1",
                                     template_param={n: "x" for n in ORDER},
                                     now=FixedClock(at("2026-11-20 09:30")).now())
    fresh = {**form, "Timestamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    fresh["Signature"] = sms_aliyun.signature("POST", fresh, KEY_SECRET)
    async with aiohttp.ClientSession() as s:
        async def post(data):
            async with s.post(aliyun.url + "/", data=data) as r:
                return r.status, (await r.json())["Code"]
        assert await post({**fresh, "PhoneNumbers": "13900000008"}) == (400, "SignatureDoesNotMatch")
        assert await post(fresh) == (200, "OK")
        assert await post(fresh) == (400, "SignatureNonceUsed")
        # the signature also covers the query of a GET-style request: the method is signed
        async with s.get(aliyun.url + "/?" + urlencode({**fresh, "SignatureNonce": "n2"})) as r:
            assert (await r.json())["Code"] == "SignatureDoesNotMatch"


# -- Tencent Cloud --------------------------------------------------------------------------

@pytest.fixture
async def tencent():
    async with FakeTencentSms(keys={SECRET_ID: SECRET_KEY}, templates={"1234567": len(ORDER)}, daily_limit=2) as fake:
        yield fake


def tencent_config(fake, **extra) -> SmsConfig:
    return SmsConfig(provider="tencent", api_base=fake.url, access_key_id=SECRET_ID, access_key_secret=SECRET_KEY,
                     sdk_app_id=fake.sdk_app_id, sign_name="示例公司", templates={"overdue": "1234567"},
                     template_params={"overdue": ORDER}, **extra)


async def test_tencent_sends_a_signed_template_message(tencent, caplog):
    caplog.set_level(logging.DEBUG)
    await SmsChannel(tencent_config(tencent)).deliver(sms("13900000000"))
    [sent] = tencent.sent
    assert sent["PhoneNumberSet"] == ["+8613900000000"] and sent["TemplateId"] == "1234567"
    # by position, in the configured order
    assert sent["TemplateParamSet"] == ["上海恒信机电有限公司", "INV-9", "20,000.00", "7"]
    assert sent["SmsSdkAppId"] == tencent.sdk_app_id and sent["SignName"] == "示例公司"
    assert SECRET_KEY not in caplog.text


async def test_tencent_refusals_map_to_what_the_outbox_does(tencent):
    now = [1_800_000_000.0]
    tencent.clock = lambda: now[0]

    class Clock(FixedClock):
        def now(self):
            return datetime.fromtimestamp(now[0], timezone.utc)

    channel = SmsChannel(tencent_config(tencent), clock=Clock(at("2026-11-20 09:30")))
    await channel.deliver(sms("13900000000"))
    with pytest.raises(RateLimitedError) as e:
        await channel.deliver(sms("13900000000"))
    assert e.value.code == "LimitExceeded.PhoneNumberThirtySecondLimit" and e.value.retry_after == 30
    now[0] += 31
    await channel.deliver(sms("13900000000"))
    now[0] += 31
    with pytest.raises(RateLimitedError) as e:
        await channel.deliver(sms("13900000000"))
    assert e.value.code == "LimitExceeded.PhoneNumberDailyLimit" and e.value.retry_after >= 3600
    with pytest.raises(PermanentDeliveryError) as e:
        await channel.deliver(sms("12345678"))
    assert e.value.code == "InvalidParameterValue.IncorrectPhoneNumber"
    wrong = SmsChannel(dataclasses.replace(tencent_config(tencent), access_key_secret="nope"), clock=channel.clock)
    with pytest.raises(PermanentDeliveryError) as e:
        await wrong.deliver(sms("13900000001"))
    assert e.value.code == "AuthFailure.SignatureFailure"
    late = SmsChannel(tencent_config(tencent), clock=FixedClock(at("2020-01-01 10:00")))
    with pytest.raises(PermanentDeliveryError) as e:
        await late.deliver(sms("13900000001"))
    assert e.value.code == "AuthFailure.SignatureExpire"
    short = SmsChannel(dataclasses.replace(tencent_config(tencent), template_params={"overdue": ["customer"]}),
                       clock=channel.clock)
    with pytest.raises(PermanentDeliveryError) as e:
        await short.deliver(sms("13900000001"))
    assert e.value.code == "InvalidParameterValue.TemplateParameterFormatError"
    assert len(tencent.sent) == 2


async def test_provider_down_is_transient():
    cfg = SmsConfig(provider="tencent", api_base="http://127.0.0.1:9", access_key_id="x", access_key_secret="y",
                    sdk_app_id="1", sign_name="s", templates={"overdue": "1"}, template_params={"overdue": ORDER},
                    timeout_seconds=2)
    with pytest.raises(TransientDeliveryError) as e:
        await SmsChannel(cfg).deliver(sms("13900000000"))
    assert e.value.code == "network"


# -- configured, end to end -------------------------------------------------------------------

@pytest.mark.parametrize("provider", ["aliyun", "tencent"])
async def test_a_reminder_sms_goes_through_the_configured_provider(provider, aiohttp_client, db, monkeypatch):
    await _ledger(db, channel="sms", target="13900000000")
    if provider == "aliyun":
        fake_cm = FakeAliyunSms(keys={KEY_ID: KEY_SECRET}, templates={"SMS_OVERDUE_1": set(ORDER)})
    else:
        fake_cm = FakeTencentSms(keys={SECRET_ID: SECRET_KEY}, templates={"SMS_OVERDUE_1": len(ORDER)})
    async with fake_cm as fake:
        section = dict(provider=provider, api_base=fake.url, sign_name="示例公司",
                       access_key_id=KEY_ID if provider == "aliyun" else SECRET_ID,
                       access_key_secret=KEY_SECRET if provider == "aliyun" else SECRET_KEY,
                       sdk_app_id=getattr(fake, "sdk_app_id", ""), templates={"overdue": "SMS_OVERDUE_1"},
                       template_params={"overdue": ORDER})
        bot = await Bot.start(aiohttp_client, db, at("2026-11-20 09:30"), sms=section)
        fake.clock = lambda: bot.clock.now().timestamp()
        await bot.run("escalations", at("2026-11-20 09:30"))
        [sent] = fake.sent
        if provider == "aliyun":
            assert '"invoice":"INV-9"' in sent["TemplateParam"] and '"days":"7"' in sent["TemplateParam"]
        else:
            assert sent["TemplateParamSet"][1:] == ["INV-9", "20,000.00", "7"]


def test_sms_configuration(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('[sms]\nprovider = "aliyun"\naccess_key_id = "LTAI"\nsign_name = "示例公司"\n'
                    '[sms.templates]\noverdue = "SMS_1"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="access_key_secret"):
        load_config(toml, env={})
    cfg = load_config(toml, env={"ARBOT_SMS_ACCESS_KEY_SECRET": KEY_SECRET})
    assert cfg.sms.access_key_secret == KEY_SECRET and cfg.sms.endpoint == "https://dysmsapi.aliyuncs.com"
    assert KEY_SECRET not in str(redacted(cfg))
    toml.write_text('[sms]\nprovider = "tencent"\naccess_key_id = "AKID"\nsdk_app_id = "1400"\n'
                    'sign_name = "示例公司"\n[sms.templates]\noverdue = "123"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="template_params.overdue"):
        load_config(toml, env={"ARBOT_SMS_ACCESS_KEY_SECRET": "x"})
    toml.write_text('[sms]\nprovider = "twilio"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="provider"):
        load_config(toml, env={})
    # before the providers: api_base alone is the generic relay
    toml.write_text("[sms]\napi_base = \"http://relay\"\napp_id = \"a\"\napp_key = \"k\"\nsign_name = \"s\"\n", encoding="utf-8")
    assert load_config(toml, env={}).sms.kind == "generic"
