"""Bounce and complaint rates as `notifier status` prints them: JSON for machines, lines for
a terminal."""

from __future__ import annotations

from notifier.ops.deliverability import EmailRates, Rates, percent


def _rates_json(rates: Rates, warnings: tuple[str, ...]) -> dict:
    return {
        "sent": rates.sent,
        "bounced": rates.bounced,
        "complained": rates.complained,
        "bounce_percent": rates.bounce_percent,
        "complaint_percent": rates.complaint_percent,
        "warnings": list(warnings),
    }


def email_rates_json(email: EmailRates | None) -> dict | None:
    """Per day (newest first) and the articles/alerts over a threshold; None: not read."""
    if email is None:
        return None
    limits = email.limits
    return {
        "thresholds": {
            "bounce_percent": limits.bounce_percent,
            "complaint_percent": limits.complaint_percent,
            "min_sent": limits.min_sent,
        },
        "days": [
            {"day": d.day.isoformat(), **_rates_json(d.rates, d.warnings)} for d in email.days
        ],
        "notices_over_threshold": [
            {"kind": n.kind, "id": n.id, "title": n.title, **_rates_json(n.rates, n.warnings)}
            for n in email.notices
            if n.warnings
        ],
    }


def email_rate_lines(email: EmailRates) -> list[str]:
    """Email sent, bounced and complained about per day, and the articles/alerts flagged."""
    lines = ["Email bounces and complaints (per day, newest first)"]
    for d in email.days:
        r, flag = d.rates, f"  OVER: {', '.join(d.warnings)}" if d.warnings else ""
        lines.append(
            f"  {d.day.isoformat()}  sent {r.sent:,}  bounced {r.bounced:,} "
            f"({percent(r.bounce_percent)})  complained {r.complained:,} "
            f"({percent(r.complaint_percent)}){flag}"
        )
    for n in (n for n in email.notices if n.warnings):
        r = n.rates
        lines.append(
            f"  {n.kind} {n.id} {n.title[:60]!r}: sent {r.sent:,}, bounced "
            f"{percent(r.bounce_percent)}, complained {percent(r.complaint_percent)}  OVER: "
            f"{', '.join(n.warnings)}"
        )
    return lines
