"""Disputes, by job (each module says more):

- ``workflow.py``: the rules as tables, pure (no I/O): which action moves which status where, and who;
- ``transitions.py``: the one writer of a change (the row, its audit event, real-time event, webhooks);
- ``resolution.py``: a dispute's money: resolutions checked by the money rules, their refunds granted
  and settled (every call into app/payouts; ``refund_settled`` and ``committed_on_order`` live here);
- ``queue.py``: priority, SLA, overdue, and the operator queue's order;
- ``timers.py``: the deadlines the worker fires;
- ``service.py``: opening, reading, acting, rating; ``controller.py``: the HTTP routes.
"""
