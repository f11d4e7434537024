"""What a caller sees *of* a dispute (or a refund) it may read: the parts the policy shows to some only.

Reading a dispute is the policy kind ``dispute``. Within it, three things are decided by their own
policy lines, and this module applies that decision to every way a dispute goes out (the dispute, lists,
the queue, action responses, the audit timeline, ``dispute.updated`` on the WebSocket) and to refunds:

- ``funding`` — who pays a compensation: ``funded_by`` and ``seller_share`` in an offer, a resolution or
  a refund. A buyer is owed the compensation whoever funds it.
- ``staff_ids`` — operator staff's user ids (``assignee_id``, the id of a staff member who acted):
  others see staff by role and display name only.
- free text written with an action (notes, a decision's rationale, a CSAT comment) is part of a
  conversation: it is shown to whoever may read a thread of that audience on the dispute
  (``thread:<audience>``), exactly like a message. Finance and the marketplace read no thread, so they
  never read such text. A question asked with ``request_info`` is not copied at all: the audit event
  keeps a reference to the message, shown to those who may read its thread.

A left-out field is ``null`` (or absent from an offer, a resolution or an audit event's ``data``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.auth import OPERATOR_STAFF, Actor
from app.permissions.enforcer import Resource, is_allowed

FUNDING_FIELDS = ("funded_by", "seller_share")
THREAD_AUDIENCES = ("tripartite", "buyer_seller", "operator_seller", "operator_buyer", "internal")
STAFF_ROLES = frozenset(role.value for role in OPERATOR_STAFF)

# Who may read each field of an audit event's ``data``, by action:
#   dispute      every reader of the dispute
#   tripartite   the conversation of both parties with the operator (a note one party leaves the other)
#   author       the author's own conversation with the operator (operator_buyer for a buyer,
#                operator_seller for a seller): a note addressed to the operator, not to the other party
#   asked        the conversation with the party that ``data.party`` names (request_info)
#   internal     operator staff only
# A field not listed is ``internal``: a new field stays private until it is placed here.
_COMMON = {"resolution": "dispute", "return_required": "dispute"}
_SETTLED = {"refund_id": "dispute", "status": "dispute", "kind": "dispute", "failure_reason": "dispute"}
AUDIT_FIELDS: dict[str, dict[str, str]] = {
    "open": {"reason": "dispute", "requested": "dispute", "lines": "dispute"},
    "propose": _COMMON,
    "accept_claim": _COMMON,
    "accept_offer": {},
    "reject_offer": {"note": "tripartite"},
    "escalate": {"note": "author"},
    "claim": {},
    "release": {"note": "internal"},
    "request_info": {"party": "dispute", "thread_id": "asked", "message_id": "asked", "question": "asked"},
    "decide": {**_COMMON, "rationale": "tripartite"},
    "mark_returned": {"carrier": "dispute", "tracking_number": "dispute"},
    "confirm_return": {"condition": "dispute", "note": "tripartite"},
    "reopen": {"note": "author"},
    "appeal": {"note": "author"},
    "withdraw": {"note": "tripartite"},
    "csat": {"score": "dispute", "comment": "author"},
    "seller_timeout": {"deadline": "dispute"},
    "buyer_timeout": {"deadline": "dispute"},
    "return_timeout": {"deadline": "dispute"},
    "close_resolved": {"deadline": "dispute"},
    "refund_succeeded": _SETTLED,
    "refund_failed": _SETTLED,
}
_PARTY_THREAD = {"buyer": "operator_buyer", "seller": "operator_seller"}


@dataclass(frozen=True, slots=True)
class View:
    """What one reader may see of one dispute (or order): decided by the policy, once per resource."""

    funding: bool
    staff_ids: bool
    audiences: frozenset[str]  # the thread audiences it may read on this dispute

    @property
    def everything(self) -> bool:
        return self.funding and self.staff_ids and len(self.audiences) == len(THREAD_AUDIENCES)


def view_of(actor: Actor, *, buyer_id: str, seller_id: str) -> View:
    def may(kind: str) -> bool:
        return is_allowed(actor, Resource(kind=kind, buyer_id=buyer_id, seller_id=seller_id), "read")

    return View(
        funding=may("funding"),
        staff_ids=may("staff_ids"),
        audiences=frozenset(a for a in THREAD_AUDIENCES if may(f"thread:{a}")),
    )


def terms(view: View, value: dict[str, Any] | None) -> dict[str, Any] | None:
    """An offer or a resolution as this reader may see it."""
    if value is None or view.funding:
        return value
    return {k: v for k, v in value.items() if k not in FUNDING_FIELDS}


def staff_id(view: View, role: str | None, user_id: str | None) -> str | None:
    """A user id as this reader may see it: an operator staff member's only to those who may."""
    if user_id is None or view.staff_ids or role not in STAFF_ROLES:
        return user_id
    return None


def sees_staff_ids(actor: Actor) -> bool:
    """The ``staff_ids`` lines hold for any resource (relation ``any``): no party is needed to decide."""
    return is_allowed(actor, Resource(kind="staff_ids"), "read")


def message_author(actor: Actor, author: dict[str, Any]) -> dict[str, Any]:
    """A message's author as this reader may see it: an operator staff member by role and name only,
    for whom the policy keeps staff ids from (the same object when nothing is left out)."""
    if author.get("role") not in STAFF_ROLES or author.get("id") is None or sees_staff_ids(actor):
        return author
    return {**author, "id": None}


def assignee_id(view: View, user_id: str | None) -> str | None:
    """Only operator staff hold a claim on a dispute."""
    return user_id if view.staff_ids else None


def audit_data(view: View, action: str, actor_role: str, data: dict[str, Any]) -> dict[str, Any]:
    """An audit event's ``data`` as this reader may see it (see ``AUDIT_FIELDS``)."""
    fields = AUDIT_FIELDS.get(action, {})
    shown: dict[str, Any] = {}
    for name, value in data.items():
        audience = fields.get(name, "internal")
        if audience == "author":
            audience = _PARTY_THREAD.get(actor_role, "internal")
        elif audience == "asked":
            audience = _PARTY_THREAD.get(str(data.get("party")), "internal")
        if audience != "dispute" and audience not in view.audiences:
            continue
        shown[name] = terms(view, value) if name == "resolution" and isinstance(value, dict) else value
    return shown


def dispute_summary(actor: Actor, summary: dict[str, Any]) -> dict[str, Any]:
    """A ``dispute.updated`` event's data as this reader may see it. The same object when nothing is
    left out (the hub then sends the frame it shares between readers)."""
    view = view_of(actor, buyer_id=str(summary.get("buyer_id") or ""), seller_id=str(summary.get("seller_id") or ""))
    if view.staff_ids and view.funding:
        return summary
    shown = dict(summary)
    if "assignee_id" in shown:
        shown["assignee_id"] = assignee_id(view, shown["assignee_id"])
    who = shown.get("actor")
    if isinstance(who, dict):
        shown["actor"] = {**who, "id": staff_id(view, who.get("role"), who.get("id"))}
    for name in ("offer", "resolution"):
        if isinstance(shown.get(name), dict):
            shown[name] = terms(view, shown[name])
    return shown
