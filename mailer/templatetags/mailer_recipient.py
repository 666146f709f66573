"""``{% load mailer_recipient %}``: parts of a job's email shown only to the
readers who have a value.

``{% ifrecipient preferences_url %}...{% endifrecipient %}`` keeps its
content for a reader whose ``preferences_url`` is present and not empty, and
drops it for the others. A job's templates are rendered once, so the tag
cannot decide there: it renders its content between markers
(``[[mj?preferences_url]]...[[/mj?preferences_url]]``, see
``mailer.jobs.personalize``) and each reader's message keeps or drops it at
send time. ``{{ recipient.x }}`` placeholders inside are filled as anywhere
else. Rendered with a real ``recipient`` (a mapping or an object), the tag
decides at once, as ``{% if recipient.preferences_url %}`` would.
"""

from __future__ import annotations

from collections.abc import Mapping

from django import template
from django.template.base import Node, NodeList, Parser, Token

from mailer.jobs.personalize import FIELD_RE, RecipientPlaceholders

register = template.Library()

_USAGE = (
    "{% ifrecipient %} takes one per-recipient field name, e.g. "
    "{% ifrecipient preferences_url %}...{% endifrecipient %}"
)


class RecipientSegmentNode(Node):
    """The content of ``{% ifrecipient field %}``, kept or dropped per
    reader."""

    def __init__(self, field: str, nodelist: NodeList) -> None:
        self.field = field
        self.nodelist = nodelist

    def render(self, context: template.Context) -> str:
        content = self.nodelist.render(context)
        recipient = context.get("recipient")
        if isinstance(recipient, RecipientPlaceholders):
            return recipient.segment(self.field, content)
        if isinstance(recipient, Mapping):
            value = recipient.get(self.field)
        else:
            value = getattr(recipient, self.field, None)
        return content if value else ""


@register.tag
def ifrecipient(parser: Parser, token: Token) -> RecipientSegmentNode:
    """``{% ifrecipient field %}...{% endifrecipient %}``.

    :raises django.template.TemplateSyntaxError: no field, more than one, or
        a name that is not a per-recipient field (lower-case letters, digits,
        ``_``)."""
    bits = token.split_contents()
    if len(bits) != 2 or not FIELD_RE.fullmatch(bits[1]):
        raise template.TemplateSyntaxError(f"{_USAGE}; got {{% {token.contents} %}}")
    nodelist = parser.parse(("endifrecipient",))
    parser.delete_first_token()
    return RecipientSegmentNode(bits[1], nodelist)
