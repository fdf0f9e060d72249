"""/api/v1 webhook routes, as Dagu defines them: trigger (POST /webhooks/{fileName}, no login —
the Guard hands it here and the webhook's own token or signature decides), list, and per DAG
create, get, delete, regenerate, toggle, HMAC enable/configure/regenerate/disable, profile
selection. Thin calls into the service layer (dagd.webhooks holds the rules)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, delete, get, post, put
from litestar.exceptions import HTTPException

from dagd import webhooks
from dagd.errors import INVALID, ServiceError
from dagd.http.common import checked_name, read_json, read_json_raw
from dagd.service import Service


def routes(svc: Service) -> list[Any]:
    @post("/api/v1/webhooks/{file_name:str}", status_code=200)
    async def trigger(file_name: str, request: Request[Any, Any, Any]) -> dict[str, Any]:
        raw, body = await read_json_raw(request)
        headers = {k.lower(): v for k, v in request.headers.items()}
        dag, rid = await svc.trigger_webhook(
            checked_name(file_name),
            authorization=headers.get("authorization"),
            signature=headers.get("x-dagu-signature"),
            profile=headers.get("x-dagu-profile"),
            raw=raw,
            body=body,
            headers=headers,
        )
        return {"dagRunId": rid, "dagName": dag}

    @get("/api/v1/webhooks")
    async def list_all() -> dict[str, Any]:
        return {"webhooks": [webhooks.details(r) for r in await svc.webhooks()]}

    @get("/api/v1/dags/{file_name:str}/webhook")
    async def one(file_name: str) -> dict[str, Any]:
        return webhooks.details(await svc.webhook(checked_name(file_name)))

    @post("/api/v1/dags/{file_name:str}/webhook", status_code=201)
    async def create(file_name: str, request: Request[Any, Any, Any]) -> dict[str, Any]:
        who = request.scope.get("state", {}).get("who")
        row, token = await svc.add_webhook(checked_name(file_name), who.describe() if who else "")
        return {"webhook": webhooks.details(row), "token": token}

    @delete("/api/v1/dags/{file_name:str}/webhook", status_code=204)
    async def remove(file_name: str) -> None:
        await svc.delete_webhook(checked_name(file_name))

    @post("/api/v1/dags/{file_name:str}/webhook/regenerate", status_code=200)
    async def regenerate(file_name: str) -> dict[str, Any]:
        row, token = await svc.regenerate_webhook(checked_name(file_name))
        return {"webhook": webhooks.details(row), "token": token}

    @post("/api/v1/dags/{file_name:str}/webhook/toggle", status_code=200)
    async def toggle(file_name: str, request: Request[Any, Any, Any]) -> dict[str, Any]:
        enabled = (await read_json(request)).get("enabled")
        if not isinstance(enabled, bool):
            raise HTTPException(status_code=400, detail="enabled (true or false) is required")
        return webhooks.details(await svc.change_webhook(checked_name(file_name), enabled=int(enabled)))

    @put("/api/v1/dags/{file_name:str}/webhook/profile-selection", status_code=200)
    async def profiles(file_name: str, request: Request[Any, Any, Any]) -> dict[str, Any]:
        allowed = (await read_json(request)).get("allowedProfiles")
        if not isinstance(allowed, list):
            raise HTTPException(status_code=400, detail="allowedProfiles (a list) is required")
        if allowed:
            raise ServiceError(INVALID, "dagd has no runtime profiles: only an empty allowedProfiles list is accepted")
        return webhooks.details(await svc.webhook(checked_name(file_name)))

    async def hmac_request(request: Request[Any, Any, Any]) -> tuple[str, str | None]:
        body = await read_json(request)
        mode, enforcement = body.get("authMode"), body.get("enforcementMode")
        if not isinstance(mode, str) or (enforcement is not None and not isinstance(enforcement, str)):
            raise HTTPException(status_code=400, detail="authMode (token_and_hmac or hmac_only) is required")
        return mode, enforcement

    @post("/api/v1/dags/{file_name:str}/webhook/hmac/enable", status_code=200)
    async def hmac_enable(file_name: str, request: Request[Any, Any, Any]) -> dict[str, Any]:
        mode, enforcement = await hmac_request(request)
        row = await svc.set_webhook_hmac(checked_name(file_name), mode, enforcement, new_secret=True)
        return {"webhook": webhooks.details(row), "hmacSecret": row["hmac_secret"]}

    @post("/api/v1/dags/{file_name:str}/webhook/hmac/configure", status_code=200)
    async def hmac_configure(file_name: str, request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
        mode, enforcement = await hmac_request(request)
        name = checked_name(file_name)
        if not (await svc.webhook(name))["hmac_secret"]:
            raise HTTPException(status_code=400, detail="HMAC is not enabled for this webhook: enable it first")
        row = await svc.set_webhook_hmac(name, mode, enforcement, new_secret=False)
        return Response(webhooks.details(row), status_code=200)

    @post("/api/v1/dags/{file_name:str}/webhook/hmac/regenerate", status_code=200)
    async def hmac_regenerate(file_name: str) -> dict[str, Any]:
        name = checked_name(file_name)
        current = await svc.webhook(name)
        if not current["hmac_secret"] or current["auth_mode"] == "token_only":
            raise HTTPException(status_code=400, detail="HMAC is not enabled for this webhook: enable it first")
        row = await svc.set_webhook_hmac(name, current["auth_mode"], None, new_secret=True)
        return {"webhook": webhooks.details(row), "hmacSecret": row["hmac_secret"]}

    @post("/api/v1/dags/{file_name:str}/webhook/hmac/disable", status_code=200)
    async def hmac_disable(file_name: str) -> dict[str, Any]:
        row = await svc.change_webhook(
            checked_name(file_name), auth_mode="token_only", hmac_secret=None, hmac_mode=None, hmac_updated_at=None
        )
        return webhooks.details(row)

    return [
        trigger, list_all, one, create, remove, regenerate, toggle, profiles,
        hmac_enable, hmac_configure, hmac_regenerate, hmac_disable,
    ]  # fmt: skip
