"""A FastAPI endpoint that runs the agent inside the request.

Each request gets its own handler (they share one background sender) attached through
`hostd_config` at invoke time, and `aflush` in `finally`: by the time the response
leaves, hostd has accepted every event of the run. No `BackgroundTasks`: those run
after the response is sent, so a worker that scales down right then loses the events.

    HOSTD_URL=http://127.0.0.1:8787 uvicorn server:app --app-dir examples/langchain
"""

from __future__ import annotations

import uuid

from fastapi import FastAPI
from langchain_core.messages import HumanMessage
from pydantic import BaseModel

from agent import build_supervisor
from hostd_langchain import HostdCallbackHandler, hostd_config

app = FastAPI(title="agent with hostd events")
supervisor = build_supervisor()


class ChatRequest(BaseModel):
    message: str
    thread_id: str | None = None


@app.post("/chat")
async def chat(request: ChatRequest) -> dict:
    handler = HostdCallbackHandler()  # HOSTD_URL / HOSTD_TOKEN
    run_id = uuid.uuid4()
    config = hostd_config(handler, run_id=run_id, metadata={"thread_id": request.thread_id or str(run_id)})
    try:
        result = await supervisor.ainvoke({"messages": [HumanMessage(request.message)]}, config)
    finally:
        flushed = await handler.aflush(timeout=5)
    return {"run_id": str(run_id), "answer": result["messages"][-1].content, "hostd": {"flushed": flushed}}
