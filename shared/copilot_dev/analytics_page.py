"""The analytics page of the local stack, served next to the agent desk (`copilot up`).

A web page with charts over time (conversations and their outcomes, engagement, resolution,
escalation and abandon rates, CSAT, answer feedback, hand-off wait times), the top unanswered
questions grouped by meaning and the documents most cited and most down-voted: what the admin
API's report (GET /admin/copilots/{id}/analytics) holds, drawn without any outside script.

The page's own JSON API calls the chat API with the admin key, which never reaches the
browser; the API wants the page's token (printed at start-up as the link's ``#token=...``
fragment, so it never reaches a server log), and answers only on its own loopback host.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from copilot_dev.client import ApiError, CopilotClient
from copilot_dev.emulators import LoopbackServer
from copilot_dev.emulators.desk import json_answer


class AnalyticsPage(LoopbackServer):
    def __init__(
        self,
        chat_url: str,
        admin_key: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
    ) -> None:
        super().__init__(host, port)
        self.token = token or secrets.token_urlsafe(24)
        self._client = CopilotClient(chat_url, admin_key=admin_key, timeout=120)
        self._map = Map(
            [
                Rule("/", endpoint="page", methods=["GET"]),
                Rule("/healthz", endpoint="health", methods=["GET"]),
                Rule("/api/copilots", endpoint="copilots", methods=["GET"]),
                Rule("/api/report", endpoint="report", methods=["GET"]),
            ]
        )

    @property
    def page_url(self) -> str:
        return f"{self.url}/#token={self.token}"

    def wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        try:
            endpoint, args = self._map.bind_to_environ(environ).match()
            response = self._refuse(request, endpoint) or getattr(self, f"_on_{endpoint}")(
                request, **args
            )
        except HTTPException as e:
            response = json_answer({"error": e.description}, e.code or 500)
        except ApiError as e:
            response = json_answer(e.body or {"error": "the chat API failed"}, e.status)
        response.headers["Cache-Control"] = "no-store"
        return response(environ, start_response)

    def _refuse(self, request: Request, endpoint: str) -> Response | None:
        port = self._server.port if self._server is not None else self._port
        allowed = {f"{name}:{port}" for name in ("127.0.0.1", "localhost", "[::1]", self._host)}
        if request.host not in allowed:  # DNS rebinding: a page elsewhere naming loopback
            return json_answer({"error": f"unexpected Host {request.host!r}"}, 421)
        if endpoint in ("copilots", "report"):
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not given:
                return json_answer({"error": "send the page's token: Authorization: Bearer"}, 401)
            if not hmac.compare_digest(given.strip().encode(), self.token.encode()):
                return json_answer({"error": "the page's token is not valid"}, 403)
        return None

    def _on_health(self, request: Request) -> Response:
        return json_answer({"status": "ok"})

    def _on_copilots(self, request: Request) -> Response:
        copilots = self._client.list_copilots()
        return json_answer(
            {"copilots": [{"copilot_id": c.copilot_id, "name": c.name} for c in copilots]}
        )

    def _on_report(self, request: Request) -> Response:
        copilot = request.args.get("copilot", "")
        if not copilot:
            return json_answer({"error": "name the copilot: ?copilot=<id>"}, 400)
        report = self._client.analytics(
            copilot,
            since=request.args.get("since") or "7d",
            until=request.args.get("until") or None,
            top=int(request.args.get("top") or 10),
        )
        return Response(report.model_dump_json(), mimetype="application/json")

    def _on_page(self, request: Request) -> Response:
        return Response(PAGE, mimetype="text/html")


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Copilot analytics</title>
<meta name="viewport" content="width=device-width,initial-scale=1">
<style>
body{font:14px system-ui,sans-serif;margin:0 auto;max-width:1100px;padding:12px;color:#1b1b1b}
h1{font-size:20px;margin:0 0 10px}h2{font-size:15px;margin:18px 0 6px}
form{display:flex;gap:10px;align-items:end;flex-wrap:wrap;margin-bottom:10px}
label{display:flex;flex-direction:column;font-size:12px;gap:2px}
#tiles{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:8px}
.tile{border:1px solid #ccc;border-radius:6px;padding:8px}
.tile .v{font-size:22px;font-weight:600}.tile .k{font-size:12px;color:#444}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(330px,1fr));gap:12px}
figure{margin:0;border:1px solid #ddd;border-radius:6px;padding:8px}
figcaption{font-weight:600;margin-bottom:4px}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:4px 6px;
border-bottom:1px solid #eee;vertical-align:top}td.n{text-align:right}
.legend span{margin-right:10px;font-size:12px}.sw{display:inline-block;width:10px;height:10px;
margin-right:3px}
#status{color:#444;min-height:1.2em}.lost{color:#a00;font-weight:600}
</style></head><body>
<main>
<h1>Copilot analytics</h1>
<form id="f"><label for="copilot">Copilot<select id="copilot"></select></label>
<label for="since">Period<select id="since"><option value="24h">Last 24 hours</option>
<option value="7d" selected>Last 7 days</option><option value="30d">Last 30 days</option>
<option value="90d">Last 90 days</option></select></label>
<button type="submit">Show</button></form>
<p id="status" role="status"></p>
<section aria-labelledby="h-sum"><h2 id="h-sum">Summary</h2><div id="tiles"></div></section>
<section aria-labelledby="h-time"><h2 id="h-time">Over time</h2><div class="charts">
<figure id="c-conv"><figcaption>Conversations a day, by outcome</figcaption><div></div></figure>
<figure id="c-rates"><figcaption>Rates a day (% of engaged)</figcaption><div></div></figure>
<figure id="c-csat"><figcaption>CSAT a day (1-5)</figcaption><div></div></figure>
<figure id="c-dist"><figcaption>CSAT responses by score</figcaption><div></div></figure>
<figure id="c-feedback"><figcaption>Answer feedback a day</figcaption><div></div></figure>
<figure id="c-wait"><figcaption>Hand-off wait a day (p50, seconds)</figcaption><div></div></figure>
</div></section>
<section aria-labelledby="h-q"><h2 id="h-q">Top unanswered questions (grouped by meaning)</h2>
<table id="unanswered"><thead><tr><th scope="col">Asked</th><th scope="col">Question</th>
<th scope="col">Also asked as</th></tr></thead><tbody></tbody></table></section>
<section aria-labelledby="h-d"><h2 id="h-d">Documents</h2>
<table id="documents"><thead><tr><th scope="col">Document</th><th scope="col">Cited</th>
<th scope="col">Down-voted</th></tr></thead><tbody></tbody></table></section>
</main>
<script>
const given=new URLSearchParams(location.hash.slice(1)).get("token");
if(given){sessionStorage.setItem("analyticsToken",given);
  history.replaceState(null,"",location.pathname+location.search)}
const auth={"Authorization":"Bearer "+(sessionStorage.getItem("analyticsToken")||"")};
const esc=s=>String(s??"").replace(/[&<>"']/g,c=>
  ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;","'":"&#39;"}[c]));
const pct=v=>v==null?"-":(v*100).toFixed(1)+"%";
const num=(v,u="")=>v==null?"-":`${v}${u}`;
const status=t=>document.getElementById("status").textContent=t;
const COLORS={resolved:"#1a7f37",escalated:"#8250df",abandoned:"#cf222e",other:"#8c959f",
  resolution:"#1a7f37",escalation:"#8250df",abandon:"#cf222e",engagement:"#0969da",csat:"#9a6700"};

function svgChart(days,series,{max,stacked,label}){
  // A bar chart (stacked) or a line chart of one value a day; text alternative in <title>.
  const W=320,H=150,L=30,B=20,n=Math.max(days.length,1),bw=(W-L-6)/n;
  const top=max||Math.max(1,...days.map((_,i)=>stacked?series.reduce((a,s)=>a+(s.values[i]||0),0)
    :Math.max(...series.map(s=>s.values[i]||0))));
  const y=v=>H-B-(v/top)*(H-B-8);
  let g="";
  for(const t of [0,top/2,top]){g+=`<line x1="${L}" x2="${W}" y1="${y(t)}" y2="${y(t)}" stroke="#eee"/>`+
    `<text x="${L-4}" y="${y(t)+4}" font-size="10" text-anchor="end">${+t.toFixed(1)}</text>`}
  days.forEach((d,i)=>{const x=L+i*bw;
    if(stacked){let base=0;for(const s of series){const v=s.values[i]||0;if(v){
      g+=`<rect x="${x+2}" y="${y(base+v)}" width="${Math.max(bw-4,1)}" height="${y(base)-y(base+v)}" fill="${s.color}"/>`;
      base+=v}}}
    if(n<=10||i%Math.ceil(n/8)===0)g+=`<text x="${x+bw/2}" y="${H-6}" font-size="10" text-anchor="middle">${esc(d.slice(5))}</text>`});
  if(!stacked)for(const s of series){const pts=s.values.map((v,i)=>v==null?null:`${L+i*bw+bw/2},${y(v)}`);
    const drawn=pts.filter(Boolean);if(drawn.length)g+=`<polyline fill="none" stroke="${s.color}" stroke-width="2" points="${drawn.join(" ")}"/>`+
    drawn.map(p=>`<circle cx="${p.split(",")[0]}" cy="${p.split(",")[1]}" r="2.5" fill="${s.color}"/>`).join("")}
  const legend=series.map(s=>`<span><i class="sw" style="background:${s.color}"></i>${esc(s.name)}</span>`).join("");
  return `<svg viewBox="0 0 ${W} ${H}" width="100%" role="img" aria-label="${esc(label)}">`+
    `<title>${esc(label)}</title>${g}</svg><div class="legend">${legend}</div>`;
}
function describe(days,series,fmt){return days.map((d,i)=>`${d}: `+series.map(s=>
  `${s.name} ${fmt(s.values[i])}`).join(", ")).join("; ")||"no data"}
function draw(id,html){document.querySelector(`#${id} div`).innerHTML=html}

function tiles(r){
  const o=r.outcomes,rt=r.rates,c=r.csat,h=r.handoffs;
  const t=[["conversations","Conversations",o.conversations],
    ["engagement","Engagement rate",pct(rt.engagement)],
    ["resolution","Resolution rate",pct(rt.resolution)],
    ["escalation","Escalation rate",pct(rt.escalation)],
    ["abandon","Abandon rate",pct(rt.abandon)],
    ["csat","CSAT",c.average==null?"-":`${c.average} (${c.responses})`],
    ["feedback","Answer feedback",`${r.feedback.up} up / ${r.feedback.down} down`],
    ["wait","Hand-off wait p50",num(h.wait_p50_s," s")],
    ["handle","Hand-off handled p50",num(h.handle_p50_s," s")],
    ["latency","Reply time p50",num(r.turns.latency_p50_ms," ms")]];
  let html=t.map(([k,label,v])=>`<div class="tile" data-figure="${k}"><div class="v">${esc(v)}</div>`+
    `<div class="k">${esc(label)}</div></div>`).join("");
  if(r.events_lost)html+=`<div class="tile lost" data-figure="lost"><div class="v">${r.events_lost}</div>`+
    `<div class="k">Events lost</div></div>`;
  document.getElementById("tiles").innerHTML=html;
}
function charts(r){
  const days=r.daily.map(d=>d.day);
  const share=(a,b)=>b?+(100*a/b).toFixed(1):null;
  const outcomes=[{name:"resolved",color:COLORS.resolved,values:r.daily.map(d=>d.resolved)},
    {name:"escalated",color:COLORS.escalated,values:r.daily.map(d=>d.escalated)},
    {name:"abandoned",color:COLORS.abandoned,values:r.daily.map(d=>d.abandoned)},
    {name:"other",color:COLORS.other,values:r.daily.map(d=>d.conversations-d.resolved-d.escalated-d.abandoned)}];
  draw("c-conv",svgChart(days,outcomes,{stacked:true,label:"Conversations a day. "+describe(days,outcomes,v=>v)}));
  const rates=[{name:"engagement",color:COLORS.engagement,values:r.daily.map(d=>share(d.engaged,d.conversations))},
    {name:"resolution",color:COLORS.resolution,values:r.daily.map(d=>share(d.resolved,d.engaged))},
    {name:"escalation",color:COLORS.escalation,values:r.daily.map(d=>share(d.escalated,d.engaged))},
    {name:"abandon",color:COLORS.abandon,values:r.daily.map(d=>share(d.abandoned,d.engaged))}];
  draw("c-rates",svgChart(days,rates,{max:100,label:"Rates a day. "+describe(days,rates,v=>v==null?"-":v+"%")}));
  const csat=[{name:"CSAT",color:COLORS.csat,values:r.daily.map(d=>d.csat==null?null:+d.csat.toFixed(2))}];
  draw("c-csat",svgChart(days,csat,{max:5,label:"CSAT a day. "+describe(days,csat,v=>v??"-")}));
  const thumbs=[{name:"up",color:COLORS.resolved,values:r.daily.map(d=>d.thumbs_up)},
    {name:"down",color:COLORS.abandon,values:r.daily.map(d=>d.thumbs_down)}];
  draw("c-feedback",svgChart(days,thumbs,{stacked:true,label:"Answer feedback a day. "+describe(days,thumbs,v=>v)}));
  const wait=[{name:"wait p50",color:COLORS.escalated,values:r.daily.map(d=>d.handoff_wait_p50_s)}];
  draw("c-wait",svgChart(days,wait,{label:"Hand-off wait a day. "+describe(days,wait,v=>v==null?"-":v+" s")}));
  const scores=["1","2","3","4","5"];
  const dist=[{name:"responses",color:COLORS.csat,values:scores.map(s=>r.csat.distribution[s])}];
  draw("c-dist",svgChart(scores.map(s=>"score "+s),dist,{stacked:true,
    label:"CSAT responses by score: "+scores.map(s=>`${s}: ${r.csat.distribution[s]}`).join(", ")}));
}
function tables(r){
  document.querySelector("#unanswered tbody").innerHTML=r.unanswered.map(g=>
    `<tr><td class="n">${g.count}</td><td>${esc(g.label)}</td><td>${esc(g.examples.filter(e=>e!==g.label).join("; "))}</td></tr>`
  ).join("")||'<tr><td colspan="3">None: every question had an answer.</td></tr>';
  const down=Object.fromEntries(r.most_downvoted.map(c=>[c.name,c.count]));
  const cited=Object.fromEntries(r.most_cited.map(c=>[c.name,c.count]));
  const names=[...new Set([...r.most_cited.map(c=>c.name),...r.most_downvoted.map(c=>c.name)])];
  document.querySelector("#documents tbody").innerHTML=names.map(n=>
    `<tr><td>${esc(n)}</td><td class="n">${cited[n]??0}</td><td class="n">${down[n]??0}</td></tr>`
  ).join("")||'<tr><td colspan="3">No document cited yet.</td></tr>';
}
async function show(){
  const copilot=document.getElementById("copilot").value;if(!copilot)return;
  status("Loading...");
  const q=new URLSearchParams({copilot,since:document.getElementById("since").value});
  const until=new URLSearchParams(location.search).get("until");if(until)q.set("until",until);
  const res=await fetch("/api/report?"+q,{headers:auth});
  if(!res.ok){status("The report failed: "+((await res.json()).error?.message||res.status));return}
  const r=await res.json();
  tiles(r);charts(r);tables(r);
  status(`${r.outcomes.conversations} conversations, ${r.events} events, from `+
    `${r.since.slice(0,16).replace("T"," ")} to ${r.until.slice(0,16).replace("T"," ")} UTC.`);
  document.body.dataset.loaded=copilot;
}
async function start(){
  const res=await fetch("/api/copilots",{headers:auth});
  if(!res.ok){status("Open this page with the link printed at start-up (it carries the page's token).");return}
  const {copilots}=await res.json();
  const wanted=new URLSearchParams(location.search).get("copilot");
  document.getElementById("copilot").innerHTML=copilots.map(c=>
    `<option value="${esc(c.copilot_id)}"${c.copilot_id===wanted?" selected":""}>${esc(c.name)} (${esc(c.copilot_id.slice(0,8))})</option>`).join("");
  show();
}
document.getElementById("f").onsubmit=e=>{e.preventDefault();show()};
start();
</script></body></html>
"""
