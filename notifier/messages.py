"""Channel-neutral rendering: a template folder + context -> a message value.

Plain Jinja2 (no Flask) so workers, previews and tests share one environment. HTML has its
CSS inlined so Gmail and Outlook show it as designed; headers never carry CR/LF.
"""

from __future__ import annotations

import email.policy
import email.utils
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage
from pathlib import Path

import css_inline
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from notifier.domain.feeds import single_line

# Folding non-ASCII subjects into several encoded-words loses the spaces between them
# (CPython's folder puts them outside the words); long lines keep each header one word.
_POLICY = email.policy.SMTP.clone(max_line_length=998)
_INLINER = css_inline.CSSInliner(keep_style_tags=False, load_remote_stylesheets=False)


@dataclass(frozen=True)
class RenderedEmail:
    """An email ready to send or preview: what every email channel accepts."""

    to: str
    subject: str
    text: str
    html: str
    headers: dict[str, str] = field(default_factory=dict)

    def to_mime(self, mail_from: str) -> EmailMessage:
        message = EmailMessage(policy=_POLICY)
        message["From"] = mail_from
        message["To"] = Address(addr_spec=self.to)
        message["Subject"] = self.subject
        message["Date"] = email.utils.formatdate(localtime=False)
        domain = email.utils.parseaddr(mail_from)[1].rpartition("@")[2] or "localhost"
        message["Message-ID"] = email.utils.make_msgid(domain=domain)
        for name, value in self.headers.items():
            message[name] = single_line(value)
        message.set_content(self.text)
        message.add_alternative(self.html, subtype="html")
        return message


class MessageRenderer:
    """Renders templates/email/<kind>/{subject.txt, body.txt, body.html}."""

    def __init__(self, templates_dir: Path) -> None:
        loader = FileSystemLoader(str(templates_dir))
        self.text_env = Environment(loader=loader, undefined=StrictUndefined, autoescape=False)
        self.html_env = Environment(
            loader=loader,
            undefined=StrictUndefined,
            autoescape=select_autoescape(default=True, default_for_string=True),
        )

    def render_email(
        self, kind: str, to: str, context: dict, headers: dict[str, str] | None = None
    ) -> RenderedEmail:
        folder = f"email/{kind}"
        subject = self.text_env.get_template(f"{folder}/subject.txt").render(context)
        text = self.text_env.get_template(f"{folder}/body.txt").render(context)
        html = self.html_env.get_template(f"{folder}/body.html").render(context)
        return RenderedEmail(
            to=to,
            subject=single_line(subject),
            text=text.strip() + "\n",
            html=_INLINER.inline(html),
            headers=headers or {},
        )
