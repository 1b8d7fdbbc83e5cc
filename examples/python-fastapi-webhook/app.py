"""A payment webhook receiver on FastAPI, guarded by idem with
Idempotency-Key semantics: the original Python module's webhook example,
with Idem's guarantees underneath.

    IDEM_STORE_URL=redis://127.0.0.1:6379 uvicorn app:app --port 8000
    curl -i localhost:8000/webhooks/payments -H 'Idempotency-Key: pay_1' \\
         -H 'Content-Type: application/json' -d '{"customer":"c1","amount":50,"currency":"EUR"}'

What a sender sees:

- no Idempotency-Key header: 400;
- the first delivery of a key: the payment is charged, 201 with the charge;
- every later delivery of that key: the first response again (status and
  body), with ``Idempotent-Replayed: true``, and nothing is charged;
- the same key while the first delivery is still being processed: 409 with
  Retry-After (never a success: if that first worker dies, the retry is what
  gets the payment through);
- the same key with another body: 422 (a key reused for another payment);
- a 5xx (here: the payment gateway is down) is not stored, so the sender's
  retry charges;
- the store unreachable: 503 with Retry-After, and nothing is charged.
"""

import asyncio
import itertools
import os

from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse

import idem

app = FastAPI(title="payments webhook (idem)")

# One processor for the route: records live under the scope "webhooks".
# The checker comes from IDEM_STORE_URL (else the default SQLite file).
processor = idem.IdempotentEventProcessor(idem.get_idempotency_checker(), scope="webhooks:payments")

# The "payment gateway" of the example: what was charged, in this process.
ledger: list[dict] = []
_charge_ids = itertools.count(1)
_gateway_down_once: set[str] = set()


def problem(status: int, title: str, detail: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"type": "about:blank", "title": title, "status": status, "detail": detail},
                        status_code=status, headers=headers, media_type="application/problem+json")


async def charge(payment: dict) -> tuple[int, dict]:
    """The side effect that must happen once per key."""
    await asyncio.sleep(float(payment.get("processing_seconds", 0)))  # the gateway's latency
    if payment.get("gateway_down_once") and payment["customer"] not in _gateway_down_once:
        _gateway_down_once.add(payment["customer"])
        raise ConnectionError("payment gateway unreachable")
    charge_id = f"ch_{next(_charge_ids)}"
    ledger.append({"charge_id": charge_id, **payment})
    return 201, {"charge_id": charge_id, "customer": payment["customer"], "amount": payment["amount"],
                 "currency": payment.get("currency", "EUR"), "status": "succeeded"}


@app.post("/webhooks/payments")
async def payment_webhook(request: Request, idempotency_key: str | None = Header(default=None)):
    if not idempotency_key:
        return problem(400, "Idempotency-Key required", "send an Idempotency-Key header with every delivery")
    try:
        payment = await request.json()
    except ValueError:
        return problem(400, "invalid JSON", "the body must be a JSON object")
    if not isinstance(payment, dict) or "customer" not in payment or "amount" not in payment:
        return problem(400, "invalid payment", "customer and amount are required")

    event = idem.EventEnvelope(event_id=idempotency_key, event_type="payment.requested", payload=payment,
                               source="webhooks")
    try:
        async with processor.process(event) as ctx:
            if ctx.should_process:
                try:
                    status, body = await charge(payment)
                except ConnectionError as exc:
                    # A 5xx is not stored: leaving the block marks the key
                    # FAILED (retryable), so the sender's retry runs again.
                    ctx.mark_failed(exc)
                    return problem(502, "gateway unreachable", str(exc))
                ctx.mark_completed({"status": status, "body": body})
                return JSONResponse(body, status_code=status)
            if ctx.in_progress:
                return problem(409, "in progress", "this key is being processed; retry later",
                               headers={"Retry-After": "1"})
            stored = ctx.cached_result
            return JSONResponse(stored["body"], status_code=stored["status"], headers={"Idempotent-Replayed": "true"})
    except idem.KeyMismatchError:
        return problem(422, "key reused", "this Idempotency-Key was used with a different payment")
    except idem.StoreUnavailableError:
        return problem(503, "store unavailable", "retry later", headers={"Retry-After": "5"})


@app.get("/ledger")
async def get_ledger():
    """What was charged: one entry per payment, however often it was sent."""
    return {"charges": ledger, "pid": os.getpid()}
