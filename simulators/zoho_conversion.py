"""Zoho CRM lead conversion: a lead becomes a contact, an account and a deal.

``POST /crm/{version}/Leads/{id}/actions/convert`` answers as Zoho does (``data[0].details`` names the
new records by module); the lead then carries ``$converted: true`` and ``$converted_detail`` (the deal,
contact and account ids, when and by whom). ``GET /crm/{version}/Leads?converted=true`` lists converted
leads (``false``, the default: the others; ``both``: all), ``If-Modified-Since`` keeps those modified
since, ``sort_by=Modified_Time`` orders them, and ``page``/``per_page`` page them with ``info``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from simulators.leads import BRT, INTEGRATION_USER, zoho_timestamp
from simulators.state import EarlyReply, SimulatorState, StateDep
from simulators.zoho import MODIFIED_BY, invalid_id, zoho_api_guard
from simulators.zoho_deals import parse_zoho_time, send_deal_webhook

MAX_PER_PAGE = 200

router = APIRouter(prefix="/zoho", tags=["zoho"])
control_router = APIRouter(prefix="/_control/zoho", tags=["control"])


@router.post("/crm/{version}/Leads/{lead_id}/actions/convert", dependencies=[Depends(zoho_api_guard)])
async def convert_lead(lead_id: str, request: Request, state: StateDep) -> JSONResponse:
    """Convert a lead; ``data[0].Deals`` holds the new deal's fields (none: no deal is created)."""
    body = await request.json()
    items = body.get("data") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items or not isinstance(items[0], dict):
        return JSONResponse(
            {"code": "INVALID_DATA", "details": {}, "message": "invalid data", "status": "error"}, 400
        )
    if lead_id not in state.zoho.leads:
        return invalid_id(lead_id)
    deals = items[0].get("Deals")
    details = convert(state, lead_id, deals if isinstance(deals, dict) else None, INTEGRATION_USER)
    return JSONResponse(
        {"data": [{"code": "SUCCESS", "details": details, "message": "SUCCESS", "status": "success"}]}
    )


@router.get("/crm/{version}/Leads", dependencies=[Depends(zoho_api_guard)])
async def list_leads(
    request: Request,
    state: StateDep,
    converted: Annotated[str, Query()] = "false",
    sort_by: Annotated[str, Query()] = "id",
    sort_order: Annotated[str, Query()] = "desc",
    page: Annotated[int, Query(ge=1)] = 1,
    per_page: Annotated[int, Query(ge=1, le=MAX_PER_PAGE)] = MAX_PER_PAGE,
) -> Response:
    """Leads as Zoho's GET Records lists them; 204 with no body when none matches."""
    state.zoho.counters.lead_lists += 1
    wanted = {"true": {True}, "false": {False}, "both": {True, False}}.get(converted)
    if wanted is None:
        raise EarlyReply(
            JSONResponse({"code": "INVALID_DATA", "details": {"param": "converted"}, "status": "error"}, 400)
        )
    since = parse_zoho_time(request.headers.get("If-Modified-Since"))
    leads = [
        lead
        for lead in state.zoho.leads.values()
        if bool(lead.get("$converted")) in wanted
        and (since is None or (parse_zoho_time(lead.get("Modified_Time")) or since) >= since)
    ]
    key = "Modified_Time" if sort_by == "Modified_Time" else "id"
    leads.sort(key=lambda lead: _sort_key(lead, key), reverse=sort_order == "desc")
    chosen = leads[(page - 1) * per_page : page * per_page]
    if not chosen:
        return Response(status_code=204)
    info = {
        "per_page": per_page,
        "count": len(chosen),
        "page": page,
        "more_records": page * per_page < len(leads),
    }
    return JSONResponse({"data": chosen, "info": info})


@control_router.post("/leads/{lead_id}/convert")
async def convert_by_hand(
    lead_id: str, state: StateDep, body: Annotated[dict[str, Any] | None, Body()] = None
) -> dict[str, Any]:
    """What a salesperson's "Convert" button does: a deal of the body's fields (keys ``send_webhook``,
    default true, and ``webhook_format`` are options), and the deal's workflow-rule webhook."""
    fields = dict(body or {})
    send = bool(fields.pop("send_webhook", True))
    webhook_format = fields.pop("webhook_format", "form")
    if lead_id not in state.zoho.leads:
        raise EarlyReply(JSONResponse({"error": "unknown_lead", "lead_id": lead_id}, status_code=404))
    details = convert(state, lead_id, fields, MODIFIED_BY)
    deal = state.zoho.deals[details["Deals"]["id"]]
    webhook = await send_deal_webhook(state, deal, webhook_format) if send else None
    return {"lead": state.zoho.leads[lead_id], "deal": deal, "webhook": webhook}


def convert(
    state: SimulatorState, lead_id: str, deal_fields: dict[str, Any] | None, user: dict[str, str]
) -> dict[str, Any]:
    """Convert the lead (again: the same records) and return Zoho's ``details`` of the conversion."""
    lead = state.zoho.leads[lead_id]
    detail = lead.get("$converted_detail") or {}
    if lead.get("$converted") and detail.get("deal"):
        deal = state.zoho.deals[detail["deal"]]
        return _details(deal, detail)
    now = zoho_timestamp(datetime.now(BRT))
    overrides = {
        "Lead_Source": lead.get("Lead_Source"),
        "Created_Time": now,
        "Modified_Time": now,
        **(deal_fields or {}),
    }
    deal = state.zoho.create_deal({key: value for key, value in overrides.items() if value is not None})
    detail = {
        "converted_date_time": now,
        "converted_by": {"id": user["id"], "name": user["name"]},
        "deal": deal["id"],
        "contact": deal["Contact_Name"]["id"],
        "account": deal["Account_Name"]["id"],
    }
    lead.update({"$converted": True, "$converted_detail": detail, "Modified_Time": now})
    state.zoho.counters.conversions += 1
    return _details(deal, detail)


def _details(deal: dict[str, Any], detail: dict[str, Any]) -> dict[str, Any]:
    return {
        "Contacts": {"name": deal["Contact_Name"]["name"], "id": detail["contact"]},
        "Deals": {"name": deal["Deal_Name"], "id": detail["deal"]},
        "Accounts": {"name": deal["Account_Name"]["name"], "id": detail["account"]},
    }


def _sort_key(lead: dict[str, Any], key: str) -> Any:
    if key == "Modified_Time":
        return parse_zoho_time(lead.get("Modified_Time")) or datetime.min.replace(tzinfo=BRT)
    return int(lead["id"])
