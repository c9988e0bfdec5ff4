"""The agent desk: a person at a live-agent hub, in front of every hub emulator.

Each hub emulator (``agent_desk.AgentDesk`` for the generic hub, ``genesys``, ``liveperson``,
``connect``) subclasses ``HubDesk``: it speaks its hub's wire protocol to the copilot, and the
desk gives the agent's side, the same for every hub:

* a web page at ``/`` (sessions, context, summary, transcript, reply box, join/end buttons);
* ``copilot agent-desk`` in a terminal (copilot_dev.desk_console), over the JSON API below;
* its Python API, for tests: ``desk.join(conversation_id)``, ``desk.say(...)``, ``desk.end(...)``,
  ``desk.event(...)`` + ``desk.deliver(...)`` to send crafted (duplicate, out-of-order) agent
  events, ``desk.tampered(...)`` for forged, unsigned and malformed ones in the hub's own
  scheme, and the switch ``fail_with`` (answer the copilot's calls with e.g. 503).

JSON API: ``GET /api/sessions``, ``GET /api/sessions/<handoff_id>``,
``POST /api/sessions/<handoff_id>/{join,say,typing,leave,end}`` with ``{"agent", "text"}``.

Who may use it: the desk shows every handed-off conversation and speaks to customers as the
agent, so it listens on loopback only, answers only requests whose ``Host`` names that loopback
address (a DNS-rebinding page cannot reach it through another name), and its API wants the
desk's token (``Authorization: Bearer <token>``; printed at start-up as the page's link
``/#token=...``: a fragment, so it never reaches a server log). POSTs must be
application/json, so another site's form cannot post either. The hub's own endpoints are for
the copilot and are authenticated the hub's way instead; ``/`` (a static page, no data) and
``/healthz`` are open.
"""

from __future__ import annotations

import abc
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import requests
from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from copilot_dev.emulators import LoopbackServer, RecordedRequest

ACTIONS = ("join", "say", "typing", "leave", "end")
# The agent's actions, in neutral form: each emulator maps them to its hub's wire events.
AgentAction = Literal["joined", "message", "typing", "left", "ended"]


@dataclass
class DeskSession:
    """One hand-off as the agent sees it. ``handoff_id`` is the hub's key for it (ours for the
    generic hub, the hub's conversation id for the named hubs)."""

    handoff_id: str
    conversation_id: str  # ours, as the hand-off's context carried it
    copilot_id: str
    reply_to: str | None
    initiate: dict[str, Any]  # the start as the hub received it, in the hub's own fields
    context: dict[str, Any] = field(default_factory=dict)  # va_* names, for the page
    summary_text: str | None = None
    unanswered_questions: list[str] = field(default_factory=list)
    routing: dict[str, Any] = field(default_factory=dict)
    transcript: list[dict[str, Any]] = field(default_factory=list)  # {"from": {"role"}, "text"}
    status: str = "waiting"  # waiting | active | ended
    agent: str | None = None
    log: list[dict[str, Any]] = field(default_factory=list)  # what both sides said, in order
    customer: list[dict[str, Any]] = field(default_factory=list)  # by the copilot's sequence
    next_sequence: int = 1  # the hub's own numbering of the events it sends back
    created_at: float = field(default_factory=time.time)
    hub: dict[str, Any] = field(default_factory=dict)  # the emulator's own per-session state

    @property
    def customer_texts(self) -> list[str]:
        return [m["text"] for m in self.customer]

    def summary(self) -> dict[str, Any]:
        return {
            "handoff_id": self.handoff_id,
            "conversation_id": self.conversation_id,
            "status": self.status,
            "agent": self.agent,
            "bot_name": self.context.get("va_BotName"),
            "last_topic": self.context.get("va_LastTopic"),
            "waiting_since": self.created_at,
            "messages": len(self.log),
        }

    def detail(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "context": self.context,
            "summary": self.summary_text,
            "unanswered_questions": self.unanswered_questions,
            "routing": self.routing,
            "transcript": self.transcript,
            "log": list(self.log),
        }


@dataclass(frozen=True)
class Tampered:
    """A bad delivery the hub's scheme must refuse, and the status it must get."""

    what: str
    response: requests.Response
    status: int


class HubDesk(LoopbackServer, abc.ABC):
    """The desk's person and pages; subclasses add the hub's endpoints (``hub_rules``, served
    by ``_on_<endpoint>`` methods) and its agent events (``event``/``deliver``)."""

    hub_type: str = ""
    # The hub numbers its events per conversation without gaps (the copilot restores their
    # order); hubs without such numbers are applied in arrival order, once each.
    ordered: bool = False

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        webhook_url: str | None = None,
        agent_name: str = "Alex",
        retries: int = 3,
        token: str | None = None,
    ) -> None:
        super().__init__(host, port)
        self.token = token or secrets.token_urlsafe(24)  # the agent's key to the JSON API
        self.webhook_url = webhook_url  # base URL of the hand-off function
        self.agent_name = agent_name
        self.retries = retries  # deliveries of one agent event when the copilot answers 5xx
        self.fail_with: int | None = None  # answer the copilot's calls with this status
        self.reject_with: str | None = None  # decline new hand-offs (hubs that can)
        self.requests: list[RecordedRequest] = []  # the copilot's calls and our answers
        self.received: list[dict[str, Any]] = []  # accepted calls, once each
        self.duplicates = 0  # calls the hub recognised as retries (its idempotency key)
        self.copilot_id: str | None = None  # whose webhook the hub calls (connect_copilot)
        self._sessions: dict[str, DeskSession] = {}
        self._lock = threading.RLock()
        self._http = threading.local()
        self._map = Map(
            [
                Rule("/", endpoint="page", methods=["GET"]),
                Rule("/healthz", endpoint="health", methods=["GET"]),
                Rule("/api/sessions", endpoint="sessions", methods=["GET"]),
                Rule("/api/sessions/<handoff_id>", endpoint="session", methods=["GET"]),
                Rule("/api/sessions/<handoff_id>/<action>", endpoint="act", methods=["POST"]),
                *self.hub_rules(),
            ]
        )

    # --- what each hub emulator gives ------------------------------------------------------

    @abc.abstractmethod
    def hub_rules(self) -> list[Rule]:
        """The hub's own endpoints (each ``endpoint`` served by ``_on_<endpoint>``)."""

    @abc.abstractmethod
    def hub_settings(self, **fields: Any) -> dict[str, Any]:
        """A copilot's ``hub`` settings that hand off to this emulator (secret_ref "DESK")."""

    @property
    @abc.abstractmethod
    def secret_value(self) -> str:
        """What COPILOT_HUB_SECRET_<REF> must hold for the copilot to talk to this emulator."""

    # The agent actions this hub has a wire event for (an action outside it is only shown
    # on the desk: e.g. a hub that sends no "joined" event, whose agent's first message joins).
    emits: frozenset[AgentAction] = frozenset({"joined", "message", "typing", "left", "ended"})
    # What the copilot learns of: by wire event, or by asking the hub (HubAdapter.poll).
    reported: frozenset[AgentAction] = frozenset({"joined", "message", "typing", "left", "ended"})
    # The hub tells the copilot the agent's name (else the customer sees "Agent").
    names_agents = True
    # The hub tells the waiting customer their place in the queue (HubEventKind "queued").
    announces_queue = False

    @abc.abstractmethod
    def event(
        self, session: DeskSession, kind: AgentAction, *, agent: str | None = None, **fields: Any
    ) -> dict[str, Any]:
        """The session's next agent event in the hub's wire form (its sequence taken, if the
        hub numbers them), not yet sent. Only called for kinds in ``emits``."""

    @abc.abstractmethod
    def deliver(
        self, session: DeskSession, event: dict[str, Any] | bytes, *, retries: int | None = None
    ) -> requests.Response:
        """Send one agent event to the copilot the hub's way (signed, retried like the hub).
        Subclasses may take more keywords to send it differently (another key...)."""

    @abc.abstractmethod
    def tampered(self, session: DeskSession, event: dict[str, Any]) -> list[Tampered]:
        """``event`` sent forged, unsigned, malformed... in the hub's scheme: each answer and
        the status the copilot must give it. Nothing of them may change the conversation."""

    @property
    def secret_ref(self) -> str:
        """The ``secret_ref`` hub_settings() names (COPILOT_HUB_SECRET_<REF>)."""
        return "DESK" if self.hub_type == "generic" else f"DESK_{self.hub_type.upper()}"

    def stack_env(self) -> dict[str, str]:
        """Environment the functions need to talk to this emulator (the secret, and any
        endpoint allow-list)."""
        return {f"COPILOT_HUB_SECRET_{self.secret_ref}": self.secret_value}

    def connect_copilot(self, copilot_id: str) -> None:
        """Hub-side setup once a copilot uses this emulator: by default the hub is told which
        copilot's webhook it calls (``copilot_id``); some hubs need more (an SNS subscription)."""
        self.copilot_id = copilot_id

    def expire_tokens(self) -> None:
        """Make every token the hub issued so far expire now (the copilot must renew)."""
        raise NotImplementedError(f"the {self.hub_type} hub issues no tokens")

    def replayed(self, session: DeskSession, event: dict[str, Any]) -> list[requests.Response]:
        """``event`` delivered, then the same delivery captured and sent again."""
        return [self.deliver(session, event), self.deliver(session, event)]

    # --- sessions --------------------------------------------------------------------------

    def sessions(self) -> list[DeskSession]:
        with self._lock:
            return sorted(self._sessions.values(), key=lambda s: s.created_at)

    def session(self, key: str) -> DeskSession:
        """By the hub's hand-off id, or the latest hand-off of our conversation id."""
        with self._lock:
            if key in self._sessions:
                return self._sessions[key]
            found = [s for s in self._sessions.values() if s.conversation_id == key]
        if not found:
            raise KeyError(f"no session for {key}")
        return max(found, key=lambda s: s.created_at)

    def add_session(self, session: DeskSession) -> DeskSession:
        with self._lock:
            self._sessions[session.handoff_id] = session
        return session

    def wait_for_session(self, conversation_id: str, timeout: float = 10) -> DeskSession:
        deadline = time.time() + timeout
        while True:
            try:
                return self.session(conversation_id)
            except KeyError:
                if time.time() > deadline:
                    raise TimeoutError(
                        f"no hand-off of {conversation_id} reached the desk"
                    ) from None
            time.sleep(0.02)

    def wait_for_customer(self, key: str, count: int, timeout: float = 10) -> list[str]:
        """The customer's first ``count`` messages in this hand-off, once they all arrived."""
        deadline = time.time() + timeout
        while True:
            texts = self.session(key).customer_texts
            if len(texts) >= count:
                return texts
            if time.time() > deadline:
                raise TimeoutError(f"{len(texts)} of {count} customer messages arrived: {texts}")
            time.sleep(0.02)

    def customer_said(
        self, session: DeskSession, text: str, sequence: int, message_id: str | None = None
    ) -> None:
        """Record a customer message the hub took (kept in the copilot's order)."""
        with self._lock:
            session.customer.append({"sequence": sequence, "id": message_id, "text": text})
            session.customer.sort(key=lambda m: m["sequence"])
            session.log.append({"from": "customer", "type": "message", "text": text})

    def customer_ended(self, session: DeskSession) -> None:
        with self._lock:
            session.status = "ended"
            session.log.append({"from": "customer", "type": "ended", "text": None})

    # --- the agent's actions ---------------------------------------------------------------

    def join(self, key: str, agent: str | None = None) -> requests.Response:
        return self._act(key, "joined", agent)

    def say(self, key: str, text: str, agent: str | None = None) -> requests.Response:
        if self.session(key).status == "waiting":
            self.join(key, agent)
        return self._act(key, "message", agent, text=text)

    def typing(self, key: str, agent: str | None = None) -> requests.Response:
        return self._act(key, "typing", agent)

    def leave(self, key: str, agent: str | None = None) -> requests.Response:
        return self._act(key, "left", agent)

    def end(self, key: str, agent: str | None = None) -> requests.Response:
        return self._act(key, "ended", agent)

    def _act(
        self, key: str, kind: AgentAction, agent: str | None, **fields: Any
    ) -> requests.Response:
        session = self.session(key)
        name = agent or session.agent or self.agent_name
        if kind in self.emits:
            response = self.deliver(session, self.event(session, kind, agent=name, **fields))
        else:
            response = requests.Response()  # nothing to send: the desk alone shows it
            response.status_code = 204
        if response.ok:
            self._record_agent(session, kind, name, fields.get("text"))
        return response

    def _record_agent(
        self, session: DeskSession, kind: AgentAction, name: str, text: str | None
    ) -> None:
        with self._lock:
            if kind == "joined":
                session.status, session.agent = "active", name
            elif kind == "left":
                session.status, session.agent = "waiting", None
            elif kind == "ended":
                session.status = "ended"
            if kind != "typing":
                session.log.append({"from": "agent", "type": kind, "agent": name, "text": text})

    def http(self) -> requests.Session:
        """A requests.Session of this thread (for deliveries to the copilot)."""
        http: requests.Session | None = getattr(self._http, "session", None)
        if http is None:
            http = self._http.session = requests.Session()
        return http

    def post_retrying(
        self,
        url: str,
        body: bytes,
        headers: dict[str, str],
        retries: int | None = None,
        backoff: float = 0.2,
    ) -> requests.Response:
        """POST to the copilot, retrying connection errors and 5xx like a hub does."""
        attempts = self.retries if retries is None else retries
        for attempt in range(attempts):
            try:
                response = self.http().post(url, data=body, headers=headers, timeout=10)
            except requests.RequestException:
                if attempt == attempts - 1:
                    raise
            else:
                if response.status_code < 500 or attempt == attempts - 1:
                    return response
            time.sleep(backoff * 2**attempt)
        raise AssertionError("unreachable")

    def webhook(self, copilot_id: str) -> str:
        if not self.webhook_url:
            raise RuntimeError("the desk has no webhook_url (the hand-off function's base URL)")
        return f"{self.webhook_url.rstrip('/')}/hooks/{self.hub_type}/{copilot_id}"

    def record(self, request: Request, status: int) -> None:
        with self._lock:
            self.requests.append(RecordedRequest(request.method, request.path, {}, status=status))

    # --- HTTP ----------------------------------------------------------------------------

    def wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        try:
            endpoint, args = self._map.bind_to_environ(environ).match()
            refused = self._refuse(request, endpoint)
            response = refused or getattr(self, f"_on_{endpoint}")(request, **args)
        except HTTPException as e:
            response = json_answer({"error": e.description}, e.code or 500)
        except KeyError as e:
            response = json_answer({"error": str(e)}, 404)
        return response(environ, start_response)

    def _refuse(self, request: Request, endpoint: str) -> Response | None:
        """Why this request may not be served, as the answer; None when it may."""
        port = self._server.port if self._server is not None else self._port
        allowed = {f"{name}:{port}" for name in ("127.0.0.1", "localhost", "[::1]", self._host)}
        if request.host not in allowed:
            # A page on another name resolving to loopback (DNS rebinding) sends its own Host.
            return json_answer({"error": f"unexpected Host {request.host!r}"}, 421)
        if endpoint in ("sessions", "session", "act"):
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not given:
                return json_answer(
                    {"error": "send the desk's token: Authorization: Bearer <token>"}, 401
                )
            if not hmac.compare_digest(given.strip().encode(), self.token.encode()):
                return json_answer({"error": "the desk's token is not valid"}, 403)
        return None

    @property
    def page_url(self) -> str:
        """The web page, with the token in the fragment (the page sends it to the API)."""
        return f"{self.url}/#token={self.token}"

    def _on_health(self, request: Request) -> Response:
        return json_answer({"status": "ok"})

    def _on_sessions(self, request: Request) -> Response:
        return json_answer({"sessions": [s.summary() for s in self.sessions()]})

    def _on_session(self, request: Request, handoff_id: str) -> Response:
        return json_answer(self.session(handoff_id).detail())

    def _on_act(self, request: Request, handoff_id: str, action: str) -> Response:
        if action not in ACTIONS:
            raise NotFound(f"no action {action!r}")
        if request.mimetype != "application/json":
            return json_answer({"error": "send application/json"}, 415)
        data = request.get_json(silent=True) or {}
        agent = data.get("agent") or None
        if action == "say":
            text = str(data.get("text") or "").strip()
            if not text:
                return json_answer({"error": "text is required"}, 400)
            response = self.say(handoff_id, text, agent)
        else:
            response = getattr(self, action)(handoff_id, agent)
        return json_answer({"status": response.status_code}, 200 if response.ok else 502)

    def _on_page(self, request: Request) -> Response:
        return Response(_PAGE, mimetype="text/html")


_LISTS = ("Customer details:", "Customer's words:", "Unanswered questions:")


def read_context_message(text: str) -> tuple[dict[str, str], dict[str, Any], list[dict[str, Any]]]:
    """The copilot's first message (copilot.handoff.hubs.fields.context_message) back into
    labels, lists and transcript lines: how an emulator reads the context a hub carries only
    as that text."""
    labels: dict[str, str] = {}
    lists: dict[str, Any] = {}
    transcript: list[dict[str, Any]] = []
    section: str | None = None
    for line in text.splitlines()[1:]:
        if line == "Transcript:":
            section = line
        elif section == "Transcript:":
            speaker, _, said = line.partition(": ")
            role = "user" if speaker == "Customer" else "bot"
            transcript.append({"from": {"role": role}, "text": said})
        elif line in _LISTS:
            section = line
            lists[line] = {} if line == "Customer details:" else []
        elif line.startswith("- ") and section in lists:
            item = line[2:]
            if isinstance(lists[section], dict):
                key, _, value = item.partition(": ")
                lists[section][key] = value
            else:
                lists[section].append(item)
        else:
            label, _, value = line.partition(": ")
            labels[label] = "" if value == "-" else value
    return {k: v for k, v in labels.items() if v}, lists, transcript


def json_answer(payload: Any, status: int = 200) -> Response:
    return Response(json.dumps(payload), status=status, mimetype="application/json")


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Agent desk</title>
<meta name="viewport" content="width=device-width,initial-scale=1">
<style>
body{font:14px system-ui,sans-serif;margin:0;display:flex;height:100vh}
h1{font-size:16px;margin:0 0 8px}
.vh{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
#list{width:260px;border-right:1px solid #ddd;overflow:auto}
#list button{display:block;width:100%;text-align:left;font:inherit;padding:8px 10px;border:0;
border-bottom:1px solid #eee;background:#fff;cursor:pointer}
#list button[aria-current]{background:#eef}
#main{flex:1;display:flex;flex-direction:column;padding:10px;overflow:hidden}
#ctx{font-size:12px;color:#333;white-space:pre-wrap;max-height:35%;overflow:auto;
background:#fafafa;border:1px solid #eee;padding:6px}
#log{flex:1;overflow:auto;margin:8px 0}
.customer{color:#064}.agent{color:#506}.bot{color:#555}
form{display:flex;gap:6px;align-items:center}#text{flex:1}
</style></head><body>
<nav id="list" aria-label="Hand-offs"></nav>
<main id="main"><h1>Agent desk</h1>
<h2 class="vh">Hand-off context</h2><div id="ctx">Waiting for a hand-off...</div>
<h2 class="vh">Conversation</h2><div id="log" aria-live="polite"></div>
<form id="f"><label for="text">Reply to the customer</label>
<input id="text" autocomplete="off">
<button type="submit">Send</button><button type="button" id="join">Join</button>
<button type="button" id="end">End</button></form></main>
<script>
let sel=null;
const given=new URLSearchParams(location.hash.slice(1)).get("token");
if(given){sessionStorage.setItem("deskToken",given);history.replaceState(null,"","/")}
const auth={"Authorization":"Bearer "+(sessionStorage.getItem("deskToken")||"")};
const get=u=>fetch(u,{headers:auth});
const post=(a,b)=>fetch(`/api/sessions/${sel}/${a}`,{method:"POST",
  headers:{...auth,"Content-Type":"application/json"},body:JSON.stringify(b||{})});
const esc=s=>String(s??"").replace(/[&<>"']/g,c=>
  ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;","'":"&#39;"}[c]));
// Redrawn only on change: a redraw every second would move keyboard focus and repeat the
// live region to screen readers.
const drawn={};
const show=(id,html)=>{if(drawn[id]!==html){drawn[id]=html;document.getElementById(id).innerHTML=html}};
async function tick(){
  const r=await get("/api/sessions");
  if(!r.ok){document.getElementById("ctx").textContent=
    "Open the desk with the link printed at start-up (it carries the desk's token).";return}
  const {sessions}=await r.json();
  if(!sel&&sessions.length)sel=sessions[sessions.length-1].handoff_id;
  show("list",sessions.map(s=>`<button type="button" data-id="${esc(s.handoff_id)}"`+
    `${s.handoff_id===sel?' aria-current="true"':""}>${esc(s.bot_name)} &middot; `+
    `${esc(s.status)}<br><small>${esc(s.last_topic)}</small></button>`).join(""));
  if(!sel)return;
  const d=await (await get(`/api/sessions/${sel}`)).json();
  const ctx=`Summary:\n${d.summary}\n\nNote to agent: ${d.context.va_AgentMessage??"-"}\n`+
    `Routing: ${JSON.stringify(d.routing)}\nContext: ${JSON.stringify(d.context)}`;
  const c=document.getElementById("ctx");if(c.textContent!==ctx)c.textContent=ctx;
  const t=d.transcript.map(a=>`<div class="${a.from.role==="user"?"customer":"bot"}">`+
    `${a.from.role==="user"?"Customer":"Copilot"}: ${esc(a.text)}</div>`).join("");
  const l=d.log.map(e=>`<div class="${esc(e.from)}">${e.from==="customer"?"Customer":esc(e.agent)}: `+
    `${esc(e.text??e.type)}</div>`).join("");
  show("log",t+"<hr>"+l);
}
document.getElementById("list").onclick=e=>{const b=e.target.closest("button");
  if(b){sel=b.dataset.id;tick()}};
document.getElementById("f").onsubmit=async e=>{e.preventDefault();
  const i=document.getElementById("text");if(!i.value.trim())return;
  await post("say",{text:i.value});i.value="";tick()};
document.getElementById("join").onclick=()=>post("join").then(tick);
document.getElementById("end").onclick=()=>post("end").then(tick);
let typed=0;document.getElementById("text").oninput=()=>{
  if(sel&&Date.now()-typed>3000){typed=Date.now();post("typing")}};
setInterval(tick,1000);tick();
</script></body></html>
"""
