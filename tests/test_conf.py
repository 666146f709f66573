"""mailer.conf: every read sees Django's settings as they are now, whether a
setting was unset, set, overridden or deleted since the last read."""

from django.conf import settings as django_settings
from django.test import override_settings

from mailer.conf import conf


def test_an_unset_setting_gives_its_default_and_is_remembered_as_unset():
    assert not hasattr(django_settings, "MAILER_DKIM_SELECTOR")
    assert conf.MAILER_DKIM_SELECTOR == "mailer"
    assert "MAILER_DKIM_SELECTOR" in conf._unset
    assert conf.MAILER_DKIM_SELECTOR == "mailer"


def test_override_settings_is_seen_after_the_unset_value_was_read():
    assert conf.MAILER_DKIM_SELECTOR == "mailer"
    with override_settings(MAILER_DKIM_SELECTOR="news2026"):
        assert conf.MAILER_DKIM_SELECTOR == "news2026"
    assert conf.MAILER_DKIM_SELECTOR == "mailer"


def test_the_settings_fixture_is_seen_both_ways(settings):
    assert conf.MAILER_BATCH_SIZE == 100
    settings.MAILER_BATCH_SIZE = 7
    assert conf.MAILER_BATCH_SIZE == 7
    del settings.MAILER_BATCH_SIZE
    assert conf.MAILER_BATCH_SIZE == 100


def test_a_setting_changed_behind_djangos_back_is_seen_after_forget(monkeypatch):
    assert conf.MAILER_RATE is None
    monkeypatch.setattr(django_settings, "MAILER_RATE", 5.0, raising=False)
    conf.forget("MAILER_RATE")
    assert conf.MAILER_RATE == 5.0
    monkeypatch.delattr(django_settings, "MAILER_RATE")
    conf.forget()
    assert conf.MAILER_RATE is None
