"""Schemathesis against the app's own OpenAPI schema: no input makes a server error (issue #12,
point 5).

Every operation of the schema is fuzzed as three people: anonymous, an annotator who entered a
campaign by its link, and an admin (with the session's CSRF token, so state-changing routes are
reached, not only refused). Both valid and invalid data are generated. The run is bounded:
``SKD_FUZZ_EXAMPLES`` examples per operation and person (default 12, a few minutes in CI for
both backends); the assertion is that none of the responses is a 5xx. Logout is left out (it
would end the session the rest of the run needs).
"""

from __future__ import annotations

import copy
import os
import re
from collections import Counter
from typing import Any

import pytest
import schemathesis
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from app.annotation.campaigns import CampaignSpec, create_campaign
from app.main import ROUTERS
from tests.conftest import add_triples, login, make_staff

EXAMPLES = int(os.environ.get("SKD_FUZZ_EXAMPLES", "12"))
SKIPPED = {("POST", "/logout")}


def _people(app) -> dict[str, dict[str, Any]]:  # type: ignore[no-untyped-def]
    """Cookies and headers of each person, from the real sign-in doors."""
    from app.core.db import session_scope

    add_triples(20)
    with session_scope(write=True) as session:
        campaign = create_campaign(session, CampaignSpec(name="fuzz", ratings_per_item=2))
        share, campaign_id = campaign.share_token, campaign.id
    people: dict[str, dict[str, Any]] = {"anonymous": {"cookies": {}, "headers": {}}}
    with TestClient(app) as annotator:
        annotator.get(f"/c/{share}?PROLIFIC_PID=fuzzer", follow_redirects=False)
        page = annotator.get(f"/annotate/{campaign_id}").text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        people["annotator"] = {
            "cookies": {"skd_session": annotator.cookies.get("skd_session")},
            "headers": {"X-CSRF-Token": token.group(1) if token else ""},
        }
    make_staff("fuzz-admin", "fuzz admin password", role="admin")
    with TestClient(app) as admin:
        csrf = login(admin, "fuzz-admin", "fuzz admin password")
        people["admin"] = {
            "cookies": {"skd_session": admin.cookies.get("skd_session")},
            "headers": {"X-CSRF-Token": csrf},
        }
    return people


def _every_route(app) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """The schema of every route, the pages' forms too: ``/openapi.json`` lists only the JSON
    API (``app.web.docs``), but every door is fuzzed."""
    routes = []
    for router in ROUTERS:
        for route in router.routes:
            if isinstance(route, APIRoute):
                route = copy.copy(route)
                route.include_in_schema = True
                routes.append(route)
    schema = get_openapi(title=app.title, version=app.version, routes=routes)
    assert len(schema["paths"]) > len(app.openapi()["paths"])
    return schema


@pytest.mark.parametrize("person", ["anonymous", "annotator", "admin"])
def test_no_input_makes_a_server_error(app, person: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from app.core.config import get_settings

    # Fuzzed logins must not lock the fuzzing admin out, nor new worker ids hit the limit.
    for name in ("login_failures_per_account", "login_failures_per_address"):
        monkeypatch.setattr(get_settings(), name, 0)
    monkeypatch.setattr(get_settings(), "crowd_accounts_per_address", 0)
    who = _people(app)[person]
    schema = schemathesis.openapi.from_dict(_every_route(app))
    schema.app = app
    failures: list[str] = []
    seen: Counter[int] = Counter()
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) in SKIPPED:
            continue
        operations += 1

        # Valid data, and invalid data too: wrong types, out of range, missing fields.
        strategies = [
            operation.as_strategy(generation_mode=mode)
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        ]

        @given(case=st.one_of(strategies))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case) -> None:  # type: ignore[no-untyped-def]
            try:
                response = case.call(cookies=who["cookies"], headers=who["headers"])
            except Exception as exc:  # noqa: BLE001 - the test client re-raises server errors
                failures.append(f"{case.as_curl_command()}\n  raised {exc!r}"[:600])
                return
            seen[response.status_code] += 1
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path} -> {response.status_code}: "
                    f"{case.as_curl_command()}\n{response.text[:300]}"
                )

        fuzz()
    assert operations > 100, "the schema lost its operations"
    assert sum(seen.values()) >= operations, seen
    assert not failures, f"{len(failures)} server errors:\n" + "\n".join(failures[:20])


BIG = str(2**64)


def test_integers_beyond_bigint_and_nul_bytes_get_a_422_naming_the_field(
    admin_client,
) -> None:  # type: ignore[no-untyped-def]
    """The causes the fuzzer found, each at its root: ids and numbers beyond BIGINT in a path,
    a query or a body; a negative ``limit``; a NUL in a text field."""

    def field_of(response) -> list:  # type: ignore[no-untyped-def]
        assert response.status_code == 422, (response.status_code, response.text)
        return [error["loc"] for error in response.json()["detail"]]

    assert ["path", "campaign_id"] in field_of(admin_client.get(f"/api/campaigns/{BIG}"))
    assert ["path", "job_id"] in field_of(admin_client.get(f"/api/jobs/{BIG}"))
    assert ["path", "export_id"] in field_of(admin_client.get(f"/api/exports/{BIG}"))
    assert ["query", "version"] in field_of(admin_client.get(f"/api/critic/preview?version={BIG}"))
    assert ["query", "limit"] in field_of(admin_client.get("/api/jobs?limit=-1"))
    body = field_of(admin_client.post("/api/exports/preview", json={"seed": 2**64}))
    assert ["body", "seed"] in body
    nul = admin_client.post("/api/campaigns", json={"name": "bad\x00name"})
    assert ["body", "name"] in field_of(nul)
    assert ["query", "next"] in field_of(admin_client.get("/login?next=/%00"))
    # The same numbers within range are looked up as usual: not found, not refused.
    assert admin_client.get(f"/api/jobs/{2**63 - 1}").status_code == 404
