"""Our schema, created after django-mailer's tables (if any) are set aside.

Why this migration is not called ``0001_initial``: django-mailer's app label
is ``mailer`` too, and its migrations ``0001_initial`` ...
``0007_alter_messagelog_message_data`` are recorded as applied in the
database of every site that used it. A migration of ours with one of those
names would count as applied there and never run (issue 13: "No migrations
to apply", then "no such column: claim_token"). None of our names is one of
django-mailer's, so Django's executor treats its seven history rows as
unknown (it ignores them) and runs ours in order, on any database:

1. ``0001_queue`` (this one): ``set_aside`` renames django-mailer's three
   tables to ``mailer_djm_*`` when ``mailer_message`` is django-mailer's (it
   has ``message_data``); on a fresh database it does nothing. Then our
   tables are created.
2. ``0002_from_django_mailer``: copies the set-aside rows into ours and drops
   the set-aside tables.

Each migration is one transaction on SQLite and PostgreSQL (transactional
DDL), so a migration stopped halfway leaves either django-mailer's tables
untouched, or them renamed aside and ours created; running ``migrate``
again continues from there. On a database without transactional DDL (MySQL)
the copy is resumable: it keeps django-mailer's ids and skips the ones
already copied.
"""

import django.db.models.deletion
import django.db.models.manager
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

from mailer.legacy.django_mailer import set_aside


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('contenttypes', '0002_remove_content_type_name'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        # Fresh installs: a no-op. django-mailer databases: its tables renamed
        # aside (nothing deleted), so ours can take their names.
        migrations.RunPython(set_aside, migrations.RunPython.noop),
        migrations.CreateModel(
            name='DontSendEntry',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('address', models.CharField(max_length=320, unique=True, verbose_name='address')),
                ('reason', models.CharField(choices=[('unsubscribed', 'unsubscribed'), ('bounced', 'bounced'), ('complained', 'complained'), ('manual', 'manual')], default='manual', max_length=12, verbose_name='reason')),
                ('note', models.TextField(blank=True, verbose_name='note')),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now, verbose_name='when')),
            ],
            options={
                'verbose_name': "don't-send entry",
                'verbose_name_plural': "don't-send list",
                'ordering': ['address'],
            },
        ),
        migrations.CreateModel(
            name='MessageJob',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('subject', models.TextField(verbose_name='subject')),
                ('from_email', models.CharField(max_length=320, verbose_name='from')),
                ('body_text', models.TextField(verbose_name='text body')),
                ('body_html', models.TextField(blank=True, verbose_name='HTML body')),
                ('headers', models.JSONField(blank=True, default=dict, verbose_name='extra headers')),
                ('list_id', models.CharField(blank=True, help_text="Kind of mailing, used in the List-Id header (e.g. 'issue').", max_length=100, verbose_name='list id')),
                ('priority', models.PositiveSmallIntegerField(choices=[(1, 'high'), (2, 'medium'), (3, 'low')], default=2, verbose_name='priority')),
                ('status', models.CharField(choices=[('pending', 'pending'), ('expanding', 'expanding'), ('queued', 'queued'), ('done', 'done'), ('cancelled', 'cancelled')], default='pending', max_length=10, verbose_name='status')),
                ('recipients', models.JSONField(blank=True, default=list, verbose_name='recipients')),
                ('recipient_count', models.PositiveIntegerField(default=0, verbose_name='recipients')),
                ('expanded_count', models.PositiveIntegerField(default=0, help_text='Expansion cursor: snapshot entries already turned into mail.', verbose_name='expanded')),
                ('skipped_count', models.PositiveIntegerField(default=0, help_text='Duplicates, invalid and suppressed addresses not queued.', verbose_name='skipped')),
                ('object_id', models.CharField(blank=True, max_length=64)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now, verbose_name='created')),
                ('finished_at', models.DateTimeField(blank=True, null=True, verbose_name='finished')),
                ('content_type', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, to='contenttypes.contenttype')),
                ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'verbose_name': 'message job',
                'ordering': ['-created_at'],
            },
        ),
        migrations.CreateModel(
            name='Message',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('priority', models.PositiveSmallIntegerField(choices=[(1, 'high'), (2, 'medium'), (3, 'low')], default=2, verbose_name='priority')),
                ('status', models.PositiveSmallIntegerField(choices=[(0, 'queued'), (1, 'deferred'), (2, 'sent'), (3, 'failed'), (4, 'suppressed'), (5, 'cancelled')], default=0, verbose_name='status')),
                ('due_at', models.DateTimeField(blank=True, default=django.utils.timezone.now, null=True, verbose_name='due')),
                ('claim_token', models.CharField(blank=True, max_length=32, null=True)),
                ('attempts', models.PositiveSmallIntegerField(default=0, verbose_name='attempts')),
                ('to_address', models.CharField(help_text='The job recipient, or the first envelope recipient.', max_length=320, verbose_name='to')),
                ('envelope_from', models.CharField(blank=True, max_length=320)),
                ('envelope_to', models.JSONField(blank=True, null=True)),
                ('subject', models.CharField(blank=True, max_length=255, verbose_name='subject')),
                ('mime', models.BinaryField(blank=True, null=True)),
                ('context', models.JSONField(blank=True, null=True)),
                ('message_id', models.CharField(blank=True, max_length=255, null=True, verbose_name='Message-ID')),
                ('provider_id', models.CharField(blank=True, max_length=255)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now, verbose_name='created')),
                ('job', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='messages', to='mailer.messagejob')),
            ],
            options={
                'verbose_name': 'message',
                'default_manager_name': 'all_objects',
            },
            managers=[
                ('all_objects', django.db.models.manager.Manager()),
            ],
        ),
        migrations.CreateModel(
            name='MessageLog',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('message_pk', models.BigIntegerField(db_index=True, null=True, verbose_name='message')),
                ('recipient', models.CharField(db_index=True, max_length=320, verbose_name='recipient')),
                ('subject', models.CharField(blank=True, max_length=255, verbose_name='subject')),
                ('result', models.PositiveSmallIntegerField(choices=[(1, 'sent'), (2, 'deferred'), (3, 'failed'), (4, 'suppressed'), (5, 'cancelled'), (6, 'skipped at expansion')], verbose_name='result')),
                ('smtp_code', models.PositiveSmallIntegerField(null=True, verbose_name='SMTP code')),
                ('reply', models.TextField(blank=True, verbose_name='reply')),
                ('attempt', models.PositiveSmallIntegerField(default=0, verbose_name='attempt')),
                ('message_id', models.CharField(blank=True, max_length=255, verbose_name='Message-ID')),
                ('created_at', models.DateTimeField(db_index=True, default=django.utils.timezone.now, verbose_name='when')),
                ('job', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='mailer.messagejob')),
            ],
            options={
                'verbose_name': 'message log',
                'ordering': ['-created_at', '-id'],
            },
        ),
        migrations.AddIndex(
            model_name='messagejob',
            index=models.Index(fields=['content_type', 'object_id', 'created_at'], name='mailer_mess_content_836d89_idx'),
        ),
        migrations.AddIndex(
            model_name='messagejob',
            index=models.Index(condition=models.Q(('status__in', ['pending', 'expanding'])), fields=['created_at'], name='mailer_job_to_expand'),
        ),
        migrations.AddIndex(
            model_name='message',
            index=models.Index(condition=models.Q(('due_at__isnull', False)), fields=['priority', 'due_at', 'id'], name='mailer_message_claim'),
        ),
        migrations.AddIndex(
            model_name='message',
            index=models.Index(condition=models.Q(('claim_token__isnull', False)), fields=['claim_token'], name='mailer_message_claim_token'),
        ),
        migrations.AddIndex(
            model_name='message',
            index=models.Index(condition=models.Q(('message_id__isnull', False)), fields=['message_id'], name='mailer_message_message_id'),
        ),
        migrations.AddConstraint(
            model_name='message',
            constraint=models.UniqueConstraint(condition=models.Q(('job__isnull', False)), fields=('job', 'to_address'), name='mailer_one_message_per_job_recipient'),
        ),
    ]
