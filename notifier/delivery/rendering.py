"""Templates -> message values: templates/email/<kind>/{subject.txt, body.txt, body.html} and
templates/push/<kind>.json.

Plain Jinja2 (no Flask) so workers, previews and tests share one environment. HTML has its
CSS inlined so Gmail and Outlook show it as designed; what cannot be inlined (the dark-mode
`@media (prefers-color-scheme: dark)` rules) stays in the one <style> left.
"""

from __future__ import annotations

import json
from pathlib import Path

import css_inline
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from notifier.messages import RenderedEmail
from notifier.text import single_line
from notifier.wording import breaking

_INLINER = css_inline.CSSInliner(
    keep_style_tags=False, keep_at_rules=True, load_remote_stylesheets=False
)


def _compiled_ahead(name: str) -> bool:
    return name.startswith(("email/", "push/")) and name.endswith((".txt", ".html", ".json"))


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
        for env in (self.text_env, self.html_env):
            env.filters["breaking"] = breaking

    def compile_all(self) -> None:
        """Compile every email and push template now (a new worker process does this before
        its first task, so the first message does not wait for it)."""
        for name in self.text_env.list_templates(filter_func=_compiled_ahead):
            env = self.html_env if name.endswith((".html", ".json")) else self.text_env
            env.get_template(name)

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

    def render_push(self, kind: str, context: dict) -> dict:
        """templates/push/<kind>.json -> the payload the service worker receives."""
        return json.loads(self.html_env.get_template(f"push/{kind}.json").render(context))
