"""An editor marks a breaking alert to go through readers' quiet hours: a checkbox in the
compose form (carried through the preview to the send) and a field of the alerts API."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from notifier.models import Alert
from tests.web.test_alerts_api import ALERT, bearer
from tests.web.test_editor_alerts import form


@pytest.mark.parametrize("ticked", [True, False])
def test_the_compose_form_carries_the_override_through_preview_to_send(
    editor_client, session, ticked
):
    data = form(editor_client, **({"override_quiet_hours": "1"} if ticked else {}))
    preview = editor_client.post("/editor/alerts/preview", data=data).text
    hidden = f'name="override_quiet_hours" value="{"1" if ticked else ""}"'
    assert hidden in preview
    editor_client.post("/editor/alerts/", data={**data, "idempotency_key": "k"})
    [alert] = session.scalars(select(Alert)).all()
    assert alert.override_quiet_hours is ticked


def test_the_api_takes_the_override_and_refuses_anything_but_a_boolean(client, api_token):
    answer = client.post("/api/v1/alerts", json={**ALERT, "override_quiet_hours": True},
                         headers=bearer(api_token))  # fmt: skip
    assert answer.status_code == 202 and answer.json["override_quiet_hours"] is True
    plain = client.post("/api/v1/alerts", json=ALERT, headers=bearer(api_token))
    assert plain.json["override_quiet_hours"] is False
    bad = client.post("/api/v1/alerts", json={**ALERT, "override_quiet_hours": "yes"},
                      headers=bearer(api_token))  # fmt: skip
    assert bad.status_code == 400 and "override_quiet_hours" in bad.json["error"]
