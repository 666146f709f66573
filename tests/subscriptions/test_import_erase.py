"""CSV import, export, the import command, one person's data exported and
erased, and the admin pages."""

from __future__ import annotations

import io
import json

import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import CommandError, call_command

from mailer.models import DontSendEntry
from mailer.subscriptions import services
from mailer.subscriptions.importing import ImportFailed, import_csv
from mailer.subscriptions.models import (
    ErasedAddress,
    Source,
    Status,
    Subscription,
)
from tests.testapp.models import Reader

from .helpers import make_lists

pytestmark = pytest.mark.django_db


def lines(text: str) -> io.StringIO:
    return io.StringIO(text)


def test_csv_import_merges_duplicates_and_keeps_consent_sources():
    daily, _ = make_lists()
    result = import_csv(
        daily,
        lines(
            "email,name,source\n"
            "ann@example.com,,import\n"
            "ANN@example.com,Ann,import\n"
            "Bob <bob@example.com>,Bob,admin\n"
            'zoe@example.com,"Zoë ""Z"" O\'Brien",\n'
        ),
    )
    assert (result.created, result.merged) == (3, 1)
    rows = dict(Subscription.objects.values_list("address", "name"))
    assert rows == {
        "ann@example.com": "Ann",
        "bob@example.com": "Bob",
        "zoe@example.com": 'Zoë "Z" O\'Brien',
    }
    consent = Subscription.objects.get(address="zoe@example.com")
    assert consent.consent_source == Source.IMPORT
    assert consent.confirmed_at == consent.consent_at is not None
    assert set(Subscription.objects.values_list("status", flat=True)) == {Status.ACTIVE}
    assert Subscription.objects.get(address="bob@example.com").consent_source == (
        Source.ADMIN
    )


def test_invalid_rows_are_reported_with_line_numbers_and_nothing_is_imported():
    daily, _ = make_lists()
    text = (
        "email,name,source\n"
        "ok@example.com,Ok,\n"
        "not-an-address,X,\n"
        "fine@example.com,,telepathy\n"
    )
    with pytest.raises(ImportFailed) as failure:
        import_csv(daily, lines(text))
    assert failure.value.errors == [
        (3, "invalid address 'not-an-address'"),
        (4, "unknown consent source 'telepathy'"),
    ]
    assert not Subscription.objects.exists()


def test_an_import_does_not_bring_back_a_reader_who_left():
    daily, _ = make_lists()
    import_csv(daily, lines("email\nann@example.com\n"))
    services.leave("ann@example.com", [daily.pk])
    result = import_csv(daily, lines("email\nann@example.com\n"))
    assert result.already == 1
    assert Subscription.objects.get().status == Status.UNSUBSCRIBED


def test_erase_keeps_only_a_hash_and_the_address_is_not_reimported(mailserver):
    from mailer.models import MessageLog
    from tests.subscriptions.helpers import deliver

    daily, breaking = make_lists()
    services.subscribe("ann@example.com", [daily, breaking], name="Ann")
    deliver()  # the confirmation email, logged as sent
    services.leave_all("ann@example.com")
    data = services.export_person("Ann@Example.com")
    assert data["address"] == "ann@example.com"
    assert {s["list"] for s in data["subscriptions"]} == {"daily", "breaking"}
    assert data["dont_send"] == ["unsubscribed"]
    assert [e["subject"] for e in data["delivery_log"]] == [
        "Please confirm your subscription"
    ]

    assert services.erase("ann@example.com") == 2
    assert not Subscription.objects.exists()
    assert not DontSendEntry.objects.exists()
    assert not MessageLog.objects.exists()
    digest = ErasedAddress.objects.get().digest
    assert "ann" not in digest and len(digest) == 64
    assert ErasedAddress.is_erased("ANN@example.com")

    result = import_csv(daily, lines("email\nann@example.com\nbob@example.com\n"))
    assert (result.created, result.skipped_erased) == (1, 1)
    assert list(Subscription.objects.values_list("address", flat=True)) == [
        "bob@example.com"
    ]


def test_import_command_from_an_existing_model():
    daily, _ = make_lists()
    Reader.objects.create(email="ann@example.com", name="Ann")
    Reader.objects.create(email="gone@example.com", active=False)
    out = io.StringIO()
    call_command(
        "import_subscribers",
        "--list=daily",
        "--from-model=testapp.Reader",
        "--email-field=email",
        "--name-field=name",
        "--filter=active=1",
        stdout=out,
    )
    assert out.getvalue() == (
        "daily: 1 added, 0 already subscribed, 0 duplicate rows merged, "
        "0 erased addresses skipped\n"
    )
    assert list(Subscription.objects.values_list("address", "name")) == [
        ("ann@example.com", "Ann")
    ]


def test_import_command_from_csv_refuses_bad_rows(tmp_path):
    make_lists()
    path = tmp_path / "subs.csv"
    path.write_text("email\nann@example.com\nbroken\n")
    with pytest.raises(CommandError, match="line 3: invalid address 'broken'"):
        call_command("import_subscribers", "--list=daily", f"--csv={path}")
    assert not Subscription.objects.exists()
    with pytest.raises(CommandError, match="No list"):
        call_command("import_subscribers", "--list=nope", f"--csv={path}")


@pytest.fixture
def staff_client(client):
    user = User.objects.create_superuser("ed", "ed@example.com", "pw")
    client.force_login(user)
    return client


def test_admin_lists_show_active_and_pending_counts(staff_client):
    daily, _ = make_lists()
    import_csv(daily, lines("email\na@example.com\nb@example.com\n"))
    services.subscribe("c@example.com", [daily])
    page = staff_client.get("/admin/mailer_subscriptions/mailinglist/")
    assert page.status_code == 200
    text = page.content.decode()
    assert '<td class="field-active">2</td>' in text
    assert '<td class="field-pending">1</td>' in text


def test_admin_csv_import_reports_bad_rows_and_imports_good_files(staff_client):
    daily, _ = make_lists()
    bad = io.BytesIO(b"email\nok@example.com\nnope\n")
    bad.name = "bad.csv"
    page = staff_client.post(
        "/admin/mailer_subscriptions/subscription/import/",
        {"mailing_list": daily.pk, "file": bad},
    )
    assert "Line 3: invalid address" in page.content.decode()
    assert not Subscription.objects.exists()
    good = io.BytesIO(b"\xef\xbb\xbfemail,name\nok@example.com,Ok\n")
    good.name = "good.csv"
    response = staff_client.post(
        "/admin/mailer_subscriptions/subscription/import/",
        {"mailing_list": daily.pk, "file": good},
    )
    assert response.status_code == 302
    assert Subscription.objects.get().name == "Ok"


def test_admin_export_and_erase_one_person(staff_client):
    daily, _ = make_lists()
    services.subscribe("ann@example.com", [daily], source=Source.ADMIN)
    url = "/admin/mailer_subscriptions/subscription/person/"
    export = staff_client.post(url, {"email": "ann@example.com", "export": "1"})
    assert json.loads(export.content)["subscriptions"][0]["list"] == "daily"
    erased = staff_client.post(url, {"email": "ann@example.com", "erase": "1"})
    assert erased.status_code == 302
    assert not Subscription.objects.exists()
    assert ErasedAddress.is_erased("ann@example.com")


def test_admin_exports_selected_subscriptions_as_csv(staff_client):
    daily, _ = make_lists()
    import_csv(daily, lines("email,name\nann@example.com,Ann\n"))
    response = staff_client.post(
        "/admin/mailer_subscriptions/subscription/",
        {
            "action": "export_selected",
            "_selected_action": list(Subscription.objects.values_list("pk", flat=True)),
        },
    )
    rows = response.content.decode().splitlines()
    assert rows[0] == "email,name,list,status,source,consent_at,confirmed_at"
    assert rows[1].startswith("ann@example.com,Ann,daily,active,import,")


def test_a_list_page_shows_growth_per_month(staff_client):
    daily, _ = make_lists()
    import_csv(daily, lines("email\na@example.com\nb@example.com\n"))
    services.leave("a@example.com", [daily.pk])
    page = staff_client.get(
        f"/admin/mailer_subscriptions/mailinglist/{daily.pk}/change/"
    ).content.decode()
    from django.utils import timezone

    now = timezone.now()
    month = (timezone.localtime(now) if timezone.is_aware(now) else now).strftime(
        "%Y-%m"
    )
    assert f"<tr><td>{month}</td><td>2</td><td>1</td></tr>" in page


@pytest.mark.parametrize("page", ["import", "person"])
def test_staff_without_the_permission_get_403_on_import_and_person_pages(client, page):
    clerk = User.objects.create_user("clerk", password="pw", is_staff=True)
    clerk.user_permissions.add(*Permission.objects.filter(codename="view_subscription"))
    client.force_login(clerk)
    url = f"/admin/mailer_subscriptions/subscription/{page}/"
    assert client.get(url).status_code == 403
    assert (
        client.post(url, {"email": "ann@example.com", "erase": "1"}).status_code == 403
    )
