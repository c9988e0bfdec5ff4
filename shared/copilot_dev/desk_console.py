"""``copilot agent-desk``: be the live agent in a terminal, over the agent desk's JSON API
(copilot_dev.emulators.agent_desk). The demo's second terminal: the customer chats in one, the
agent answers in the other."""

from __future__ import annotations

import threading
import time
from typing import Any

import requests
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

HELP = "Type to reply. /end ends the chat, /leave hands it back to the queue, /quit exits."


class DeskApi:
    def __init__(self, base_url: str, token: str) -> None:
        self.base = base_url.rstrip("/")
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {token}"

    def sessions(self) -> list[dict[str, Any]]:
        response = self.http.get(f"{self.base}/api/sessions", timeout=5)
        response.raise_for_status()
        return list(response.json()["sessions"])

    def session(self, handoff_id: str) -> dict[str, Any]:
        response = self.http.get(f"{self.base}/api/sessions/{handoff_id}", timeout=5)
        response.raise_for_status()
        return dict(response.json())

    def act(self, handoff_id: str, action: str, **body: str) -> bool:
        response = self.http.post(
            f"{self.base}/api/sessions/{handoff_id}/{action}", json=body, timeout=30
        )
        return response.ok


def run(base_url: str, token: str, console: Console, agent: str = "Alex") -> None:
    api = DeskApi(base_url, token)
    console.print(f"[bold]Agent desk[/bold] at {base_url}. {HELP}")
    while True:
        session = _wait_for_customer(api, console)
        if session is None:
            return
        if not _serve(api, console, session, agent):
            return


def _wait_for_customer(api: DeskApi, console: Console) -> dict[str, Any] | None:
    with console.status("Waiting for a hand-off... (Ctrl-C to quit)"):
        try:
            while True:
                waiting = [s for s in api.sessions() if s["status"] == "waiting"]
                if waiting:
                    return api.session(waiting[0]["handoff_id"])
                time.sleep(0.5)
        except KeyboardInterrupt:
            return None
        except requests.RequestException as e:
            console.print(f"[red]The desk at {api.base} does not answer ({e}).[/red]")
            return None


def _serve(api: DeskApi, console: Console, session: dict[str, Any], agent: str) -> bool:
    """One customer, until the chat ends; False when the agent quits."""
    hid = session["handoff_id"]
    _show_context(console, session)
    if not api.act(hid, "join", agent=agent):
        console.print("[red]Could not join: the copilot did not take the event.[/red]")
    done = threading.Event()
    printer = threading.Thread(
        target=_print_customer, args=(api, console, hid, len(session["log"]), done), daemon=True
    )
    printer.start()
    try:
        while not done.is_set():
            try:
                text = console.input("[bold magenta]Agent:[/bold magenta] ").strip()
            except (EOFError, KeyboardInterrupt):
                api.act(hid, "end", agent=agent)
                return False
            if done.is_set() or not text:
                continue
            if text == "/quit":
                api.act(hid, "end", agent=agent)
                return False
            if text in ("/end", "/leave"):
                api.act(hid, text[1:], agent=agent)
                console.print("[dim]Chat closed.[/dim]")
                return True
            if not api.act(hid, "say", agent=agent, text=text):
                console.print("[red]Not delivered: the copilot did not take it.[/red]")
        return True
    finally:
        done.set()


def _show_context(console: Console, session: dict[str, Any]) -> None:
    ctx = session.get("context", {})
    lines = [
        f"[bold]{ctx.get('va_BotName', 'Copilot')}[/bold] hands over conversation "
        f"{session['conversation_id']}",
        f"Last topic: {ctx.get('va_LastTopic')}   Language: {ctx.get('va_Language')}",
        f"Routing: {session.get('routing')}",
    ]
    if ctx.get("va_AgentMessage"):
        lines.append(f"[yellow]Note: {ctx['va_AgentMessage']}[/yellow]")
    variables = {k: v for k, v in ctx.items() if not k.startswith("va_")}
    if variables:
        lines.append(f"Customer: {variables}")
    lines += ["", session.get("summary") or ""]
    console.print(Panel("\n".join(lines), title="Hand-off", expand=False))
    table = Table("who", "said", show_header=False, box=None)
    for activity in session.get("transcript", [])[-20:]:
        who = {"user": "Customer", "bot": "Copilot"}.get(activity["from"]["role"], "System")
        table.add_row(f"[dim]{who}[/dim]", activity.get("text", ""))
    console.print(table)
    console.print(f"[dim]{HELP}[/dim]")


def _print_customer(
    api: DeskApi, console: Console, hid: str, seen: int, done: threading.Event
) -> None:
    while not done.wait(0.5):
        try:
            detail = api.session(hid)
        except requests.RequestException:
            continue
        for entry in detail["log"][seen:]:
            if entry["from"] != "customer":
                continue
            if entry["type"] == "ended":
                console.print("[dim]The customer ended the chat. Press Enter.[/dim]")
                done.set()
            else:
                console.print(f"[bold cyan]Customer:[/bold cyan] {entry['text']}", highlight=False)
        seen = len(detail["log"])
