"""django-chroniker, with its ids matching its own migrations.

chroniker 1.1's migration 0004 makes its ids ``BigAutoField`` while its
AppConfig still says ``AutoField``, so a plain ``manage.py makemigrations``
would write a migration into chroniker's installed package. Only used when
chroniker is installed (see settings).
"""

from chroniker.apps import ChronikerConfig as BaseChronikerConfig


class ChronikerConfig(BaseChronikerConfig):
    default_auto_field = "django.db.models.BigAutoField"
