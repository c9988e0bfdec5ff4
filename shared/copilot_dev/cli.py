"""``copilot``: run the local stack, chat, and operate copilots."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    help="Customer-engagement copilot: local stack, chat and administration.",
    no_args_is_help=True,
    add_completion=False,
)
copilots_app = typer.Typer(help="Create, show, list and update copilots.", no_args_is_help=True)
app.add_typer(copilots_app, name="copilots")
console = Console()
err = Console(stderr=True)

DataDir = Annotated[
    Path,
    typer.Option(
        "--data-dir",
        envvar="COPILOT_LOCAL_DIR",
        help="Where the local stack keeps its state and logs.",
    ),
]
DEFAULT_DATA_DIR = Path(".local")


def _repo_root() -> Path:
    here = Path.cwd()
    for candidate in [here, *here.parents]:
        if (candidate / "functions" / "chat" / "main.py").exists():
            return candidate
    err.print("[red]Run this from the copilot repository (no functions/ folder found).[/red]")
    raise typer.Exit(2)


def _stack_info(data_dir: Path) -> dict[str, Any]:
    from copilot_dev.localstack import read_stack_file

    info = read_stack_file(data_dir) or {}
    return info


def _client(data_dir: Path, url: str | None = None) -> Any:
    from copilot_dev.client import CopilotClient

    info = _stack_info(data_dir)
    base = url or os.environ.get("COPILOT_API_URL") or info.get("chat_url")
    if not base:
        err.print(
            "[red]No API URL: start the local stack with 'copilot up', or set COPILOT_API_URL.[/red]"
        )
        raise typer.Exit(2)
    key = os.environ.get("COPILOT_ADMIN_API_KEY") or info.get("env", {}).get(
        "COPILOT_ADMIN_API_KEY"
    )
    return CopilotClient(base, admin_key=key)


def _fail(e: Exception) -> NoReturn:
    err.print(f"[red]{e}[/red]")
    raise typer.Exit(1)


@app.command()
def up(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    chat_port: int = typer.Option(8080, help="Port of the chat function (customer + admin API)."),
    chat: bool = typer.Option(True, help="Open a terminal chat with the demo copilot."),
    demo: bool = typer.Option(True, help="Create the demo copilot and upload its knowledge."),
    desk: bool = typer.Option(
        True, help="Start the agent desk (a hub emulator) and hand the demo copilot's chats to it."
    ),
    hub: str = typer.Option(
        "generic",
        help="The hub the demo copilot hands off to, emulated on loopback with the agent desk "
        "in front: generic, genesys, liveperson or connect.",
    ),
    desk_port: int = typer.Option(8090, help="Port of the agent desk (web page + hub)."),
    site_port: int = typer.Option(
        8070, help="Port of the demo site (Northwind Bikes, with the web chat embedded)."
    ),
    analytics_port: int = typer.Option(
        8091, help="Port of the analytics page (charts, unanswered questions, documents)."
    ),
) -> None:
    """Start the whole local stack (emulated AWS, Chroma, the three functions) with a demo copilot."""
    import logging

    from copilot_dev.demo_site import DemoSite
    from copilot_dev.emulators.hubs import EMULATORS, emulator
    from copilot_dev.localstack import LocalStack, StackConfig, free_port

    if hub not in EMULATORS:
        _fail(ValueError(f"--hub must be one of {', '.join(EMULATORS)} (not {hub!r})"))
    root = _repo_root()
    config = StackConfig(
        root=root,
        data_dir=data_dir.resolve(),
        chat_port=chat_port,
        moto_port=free_port(),
        chroma_port=free_port(),
        ingest_port=free_port(),
        handoff_port=free_port(),
        outbox_port=free_port(),
        rate_limits=True,  # the product as deployed: 429s for a client over its limits
    )
    agent_desk = None
    if desk and demo:
        # The emulator makes fresh credentials; they live only in these processes.
        # The desk shares this terminal with the customer's chat: no per-request log lines.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        try:
            agent_desk = emulator(
                hub, port=desk_port, webhook_url=config.function_url("handoff")
            ).start()
            config.extra_env.update(agent_desk.stack_env())
        except OSError as e:
            _fail(
                OSError(f"the agent desk cannot listen on port {desk_port} ({e}): use --desk-port")
            )
    site = None
    if demo:
        try:
            site = DemoSite(config.function_url("chat"), port=site_port).start()
        except OSError as e:
            _fail(
                OSError(f"the demo site cannot listen on port {site_port} ({e}): use --site-port")
            )
    stack = LocalStack(config)
    signal.signal(signal.SIGTERM, _interrupt)
    started = time.time()
    page = None
    try:
        with console.status("Starting moto (S3, SQS, DynamoDB), Chroma and the three functions..."):
            stack.start()
        console.print(
            f"[green]Local stack up[/green] in {time.time() - started:.1f} s "
            f"(logs in {config.data_dir / 'logs'})"
        )
        from copilot_dev.analytics_page import AnalyticsPage

        try:
            page = AnalyticsPage(
                config.function_url("chat"), config.admin_api_key, port=analytics_port
            ).start()
        except OSError as e:
            _fail(
                OSError(
                    f"the analytics page cannot listen on port {analytics_port} ({e}): "
                    "use --analytics-port"
                )
            )
        copilot_id = None
        if demo:
            copilot_id = _seed(stack, root, agent_desk, site.origins() if site else ())
            if site is not None:
                site.copilot_id = copilot_id
                _learn_site(config, copilot_id, site)
        _print_how_to(config, copilot_id, agent_desk, site, page)
        if chat and copilot_id and sys.stdin.isatty():
            _chat_loop(_client(config.data_dir), copilot_id)
        else:
            console.print("Press Ctrl-C to stop the stack.")
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        with console.status("Stopping..."):
            stack.stop()
            if page is not None:
                page.stop()
            if agent_desk is not None:
                agent_desk.stop()
            if site is not None:
                site.stop()
        console.print("Stopped.")


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def _learn_site(config: Any, copilot_id: str, site: Any) -> None:
    """The demo site's group-rides page becomes the demo copilot's website source, crawled now
    (as the schedule would on AWS): answers about it cite the page's URL. A failure is shown,
    and the stack runs on without it."""
    from copilot_dev.client import CopilotClient

    client = CopilotClient(config.function_url("chat"), admin_key=config.admin_api_key)
    started = time.time()
    with console.status("Crawling the demo site's group-rides page..."):
        try:
            source = {"start_urls": [f"{site.url}/rides.html"], "max_depth": 0}
            client.update_copilot(copilot_id, {"websites": [source]})
            _sources(config.data_dir).refresh(copilot_id)
            deadline = time.time() + 60
            pages: list[Any] = []
            while not pages and time.time() < deadline:
                docs = client.documents(copilot_id)
                pages = [d for d in docs if d.doc_key.startswith("web/") and d.status != "pending"]
                time.sleep(0.2)
        except Exception as e:  # the demo works without it: say so, keep the stack up
            console.print(f"[yellow]The demo site was not crawled:[/yellow] {e}")
            return
    indexed = sum(d.status == "indexed" for d in pages)
    console.print(f"Crawled the demo site: {indexed} page indexed in {time.time() - started:.1f} s")


def _seed(stack: Any, root: Path, agent_desk: Any = None, origins: Iterable[str] = ()) -> str:
    from copilot_dev.client import CopilotClient
    from copilot_dev.demo import seed_demo

    cfg = stack.config
    client = CopilotClient(cfg.function_url("chat"), admin_key=cfg.admin_api_key)
    with console.status("Creating the demo copilot and indexing its knowledge..."):
        started = time.time()
        copilot, docs = seed_demo(
            client, stack.client("s3"), cfg.bucket, root / "infra" / "demo", origins
        )
    indexed = sum(d.status == "indexed" for d in docs)
    console.print(
        f"Demo copilot [bold]{copilot.name}[/bold] ({copilot.copilot_id}): "
        f"{indexed}/{len(docs)} files indexed in {time.time() - started:.1f} s"
    )
    info_path = cfg.data_dir / "stack.json"
    info = json.loads(info_path.read_text())
    info["demo_copilot_id"] = copilot.copilot_id
    if agent_desk is not None:
        settings = agent_desk.hub_settings(
            queue="bike-support", agent_note="Demo customer from the Northwind Helper web chat."
        )
        client.update_copilot(copilot.copilot_id, {"hub": settings})
        agent_desk.connect_copilot(copilot.copilot_id)
        info["hub"] = agent_desk.hub_type
        info["desk_url"] = agent_desk.url
        info["desk_token"] = agent_desk.token  # stack.json is private to its owner (0600)
    info_path.write_text(json.dumps(info, indent=2))
    return copilot.copilot_id


def _print_how_to(
    config: Any,
    copilot_id: str | None,
    agent_desk: Any = None,
    site: Any = None,
    page: Any = None,
) -> None:
    chat_url = config.function_url("chat")
    if site is not None:
        console.print(f"Demo site:   {site.url}/  (Northwind Bikes, with the web chat)")
    console.print(f"Chat API:    {chat_url}  (OpenAPI: {chat_url}/openapi.json)")
    console.print(f"Hand-off:    {config.function_url('handoff')}")
    console.print(f"Admin key:   in {config.data_dir / 'stack.json'} (header X-Admin-Key)")
    if agent_desk is not None:
        console.print(
            f"Agent desk:  {agent_desk.page_url}  (in front of the {agent_desk.hub_type} hub "
            "emulator; or in another terminal: .venv/bin/copilot agent-desk)"
        )
    if page is not None:
        console.print(
            f"Analytics:   {page.page_url}  (or: .venv/bin/copilot analytics --copilot ID)"
        )
    if copilot_id:
        console.print(f"Chat from another terminal:  .venv/bin/copilot chat --copilot {copilot_id}")


@app.command()
def chat(
    copilot: str = typer.Option(None, "--copilot", help="Copilot id (default: the demo copilot)."),
    url: str = typer.Option(None, help="Chat API base URL (default: the local stack)."),
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Chat with a copilot in the terminal."""
    copilot_id = copilot or _stack_info(data_dir).get("demo_copilot_id")
    if not copilot_id:
        _fail(ValueError("no copilot given and no demo copilot running: use --copilot ID"))
    _chat_loop(_client(data_dir, url), str(copilot_id))


def _chat_loop(client: Any, copilot_id: str) -> None:
    import threading

    from copilot_dev.client import ApiError, CopilotClient

    try:
        started = client.start(copilot_id)
    except (ApiError, OSError) as e:
        _fail(e)
    conversation, token = started.conversation_id, started.token
    console.print(
        "[dim]Type your message; /up or /down rates the last answer; /cancel stops waiting "
        "for a person; /quit to leave.[/dim]"
    )
    _show(started.messages)
    seen = [max(m.seq for m in started.messages)]
    answered: list[int] = []  # the copilot's answers so far (what /up and /down rate)
    lock = threading.Lock()
    stop = threading.Event()

    def show_new(messages: list[Any]) -> None:
        with lock:
            new = [m for m in messages if m.seq > seen[0] and m.role != "customer"]
            _show(new)
            answered.extend(m.seq for m in new if m.role == "copilot" and m.citations)
            seen[0] = max([seen[0], *(m.seq for m in messages)])

    def poll() -> None:  # an agent's messages arrive between the customer's turns
        poller = CopilotClient(client.base_url)
        while not stop.wait(0.5):
            try:
                show_new(poller.messages(conversation, token, after=seen[0]).messages)
            except (ApiError, OSError):
                continue

    threading.Thread(target=poll, daemon=True).start()
    try:
        while True:
            try:
                text = console.input("[bold cyan]You:[/bold cyan] ").strip()
            except (EOFError, KeyboardInterrupt):
                console.print()
                return
            if text in ("/quit", "/exit"):
                return
            if not text:
                continue
            if text in ("/up", "/down"):
                if not answered:
                    err.print("[yellow]No answer to rate yet.[/yellow]")
                    continue
                try:
                    client.feedback(conversation, token, answered[-1], text[1:])
                except ApiError as e:
                    err.print(f"[red]{e}[/red]")
                    continue
                console.print("[dim]Thanks for the feedback.[/dim]")
                continue
            try:
                if text == "/cancel":
                    turn = client.cancel_handoff(conversation, token)
                else:
                    turn = client.send(conversation, token, text)
            except ApiError as e:
                err.print(f"[red]{e}[/red]")
                continue
            show_new(turn.messages)
    finally:
        stop.set()


def _show(messages: list[Any]) -> None:
    for m in messages:
        if m.role == "system":  # hand-off events: joined, typing, left, ended
            console.print(f"[dim italic]{m.text}[/dim italic]", highlight=False)
            continue
        who = {
            "copilot": "[bold green]Copilot:[/bold green]",
            "agent": f"[bold magenta]{m.author or 'Agent'}:[/bold magenta]",
        }.get(m.role, f"[bold]{m.role}:[/bold]")
        console.print(who, m.text, highlight=False)
        if m.suggestions:
            console.print("  [dim]" + " | ".join(m.suggestions) + "[/dim]")


@app.command("agent-desk")
def agent_desk(
    url: str = typer.Option(None, help="The desk's URL (default: the one `copilot up` started)."),
    token: str = typer.Option(
        None, envvar="COPILOT_DESK_TOKEN", help="The desk's token (default: from `copilot up`)."
    ),
    agent: str = typer.Option("Alex", help="Your name, as the customer sees it."),
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Be the live agent: take the demo copilot's hand-offs in this terminal."""
    from copilot_dev.desk_console import run

    info = _stack_info(data_dir) if not (url and token) else {}
    base, key = url or info.get("desk_url"), token or info.get("desk_token")
    if not base or not key:
        _fail(
            ValueError("no agent desk running: start it with 'copilot up' (or pass --url/--token)")
        )
    run(str(base), str(key), console, agent)


@copilots_app.command("create")
def copilots_create(
    file: Path = typer.Argument(..., exists=True, help="JSON file with the copilot's settings."),
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Create a copilot from a JSON file."""
    from copilot_dev.client import ApiError

    try:
        created = _client(data_dir).create_copilot(json.loads(file.read_text()))
    except (ApiError, json.JSONDecodeError) as e:
        _fail(e)
    console.print_json(created.model_dump_json())


@copilots_app.command("show")
def copilots_show(copilot_id: str, data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Show a copilot's settings."""
    from copilot_dev.client import ApiError

    try:
        console.print_json(_client(data_dir).get_copilot(copilot_id).model_dump_json())
    except ApiError as e:
        _fail(e)


@copilots_app.command("list")
def copilots_list(data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """List copilots."""
    from copilot_dev.client import ApiError

    try:
        items = _client(data_dir).list_copilots()
    except ApiError as e:
        _fail(e)
    table = Table("id", "name", "language", "topics", "no-match threshold")
    for c in items:
        table.add_row(
            c.copilot_id, c.name, c.language, str(len(c.topics)), str(c.no_match_threshold)
        )
    console.print(table)


@copilots_app.command("update")
def copilots_update(
    copilot_id: str,
    file: Path = typer.Argument(..., exists=True, help="JSON file with the fields to change."),
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Update a copilot: only the fields in the file change (behaviour messages merge)."""
    from copilot_dev.client import ApiError

    try:
        updated = _client(data_dir).update_copilot(copilot_id, json.loads(file.read_text()))
    except (ApiError, json.JSONDecodeError) as e:
        _fail(e)
    console.print_json(updated.model_dump_json())


def _aws_settings(data_dir: Path) -> Any:
    """Settings for talking to the bucket: the environment, else the running local stack."""
    from copilot.config import Settings

    info = _stack_info(data_dir)
    os.environ.update({k: v for k, v in info.get("env", {}).items() if k not in os.environ})
    return Settings()


@app.command()
def upload(
    paths: list[Path] = typer.Argument(..., exists=True, help="Files or folders to upload."),
    copilot: str = typer.Option(..., "--copilot", help="Copilot id."),
    wait: bool = typer.Option(True, help="Wait until every file is indexed or failed."),
    timeout: float = typer.Option(600, help="Seconds to wait for indexing."),
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Upload knowledge files to a copilot (through the bucket, as on AWS)."""
    from copilot.adapters.aws.session import aws_client
    from copilot_dev.demo import knowledge_files, upload_files, wait_indexed
    from copilot_dev.progress import progress_bars

    settings = _aws_settings(data_dir)
    client = _client(data_dir)
    try:
        client.get_copilot(copilot)
    except Exception as e:
        _fail(e)
    batches = [(knowledge_files(p), p) if p.is_dir() else ([p], p.parent) for p in paths]
    total = sum(len(files) for files, _ in batches)
    s3 = aws_client(settings, "s3")
    versions: dict[str, str] = {}
    with progress_bars(console) as progress:
        sent = progress.add_task("Uploading", total=total)
        for files, base in batches:
            versions |= upload_files(
                s3,
                settings.bucket,
                copilot,
                files,
                base,
                on_upload=lambda _key: progress.advance(sent),
            )
        if wait:
            indexed = progress.add_task("Indexing", total=len(versions))
            statuses = wait_indexed(
                client,
                copilot,
                versions,
                timeout=timeout,
                on_progress=lambda n: progress.update(indexed, completed=n),
            )
    if wait:
        _docs_table(statuses)
        failed = sum(d.status == "failed" for d in statuses)
        console.print(f"{len(statuses) - failed} indexed, {failed} failed.")
        if failed:
            raise typer.Exit(1)
    else:
        console.print(f"Uploaded {len(versions)} file(s).")


def _sources(data_dir: Path) -> Any:
    from copilot.bootstrap import Container

    return Container(_aws_settings(data_dir)).sources


@app.command()
def crawl(
    urls: list[str] = typer.Argument(..., help="Start URL(s) of one website."),
    copilot: str = typer.Option(..., "--copilot", help="Copilot id."),
    max_depth: int = typer.Option(3, help="Links to follow from the start URLs."),
    max_pages: int = typer.Option(200, help="Pages to fetch at most."),
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Crawl a public website into a copilot's knowledge (changed pages only; gone pages removed)."""
    from pydantic import ValidationError

    from copilot.admin.models import WebsiteSource
    from copilot.errors import CopilotError

    try:
        site = WebsiteSource(start_urls=urls, max_depth=max_depth, max_pages=max_pages)
        with console.status(f"Crawling {urls[0]}..."):
            report = _sources(data_dir).crawl(copilot, site)
    except (CopilotError, ValidationError, ValueError) as e:
        _fail(e)
    console.print(report.summary())


@app.command()
def sync(
    hub: str = typer.Argument(..., help="servicenow or salesforce"),
    copilot: str = typer.Option(..., "--copilot", help="Copilot id."),
    full: bool = typer.Option(False, help="Re-read every published article, not only changes."),
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Sync published knowledge-base articles (credentials: COPILOT_SERVICENOW_* / COPILOT_SALESFORCE_*)."""
    from copilot.errors import CopilotError
    from copilot.sources.service import _kb_summary

    try:
        with console.status(f"Syncing {hub}..."):
            report = _sources(data_dir).sync_kb(copilot, hub, full=full)
    except CopilotError as e:
        _fail(e)
    console.print(_kb_summary(report))


@app.command()
def refresh(
    copilot: str = typer.Option(None, "--copilot", help="One copilot (default: all)."),
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Re-crawl the configured websites and sync the configured knowledge bases (as the schedule does)."""
    from copilot.errors import CopilotError

    try:
        lines = _sources(data_dir).refresh(copilot)
    except CopilotError as e:
        _fail(e)
    for line in lines or ["No websites or knowledge bases are configured."]:
        console.print(line, highlight=False)


@app.command()
def reindex(
    copilot: str = typer.Option(..., "--copilot", help="Copilot id."),
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Rebuild a copilot's index from its files (after changing the embedding model)."""
    from copilot_dev.client import ApiError

    try:
        result = _client(data_dir).reindex(copilot)
    except ApiError as e:
        _fail(e)
    console.print(
        f"Queued {result['queued']} file(s) for indexing; follow with `copilot docs --copilot {copilot}`."
    )


docs_app = typer.Typer(
    help="Knowledge documents of a copilot and their indexing status; `retry` queues failed ones.",
    invoke_without_command=True,
)
app.add_typer(docs_app, name="docs")


@docs_app.callback()
def docs(
    ctx: typer.Context,
    copilot: str = typer.Option(None, "--copilot", help="Copilot id."),
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Knowledge documents of a copilot and their indexing status (failed ones with why)."""
    from copilot_dev.client import ApiError

    ctx.obj = copilot  # `copilot docs --copilot ID retry` names the copilot for retry too
    if ctx.invoked_subcommand is not None:
        return
    if not copilot:
        err.print("[red]Missing option '--copilot'.[/red]")
        raise typer.Exit(2)
    try:
        _docs_table(_client(data_dir).documents(copilot))
    except ApiError as e:
        _fail(e)


@docs_app.command("retry")
def docs_retry(
    ctx: typer.Context,
    keys: list[str] = typer.Argument(
        None, help="Documents to queue again (default: every failed one)."
    ),
    copilot: str = typer.Option(None, "--copilot", help="One copilot (default: all)."),
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Queue failed documents for another indexing attempt (after fixing what failed)."""
    from copilot_dev.client import ApiError

    copilot = copilot or ctx.obj
    if keys and not copilot:
        err.print("[red]Name the copilot of these documents with --copilot.[/red]")
        raise typer.Exit(2)
    client = _client(data_dir)
    try:
        ids = [copilot] if copilot else [c.copilot_id for c in client.list_copilots()]
        results = [client.retry_documents(copilot_id, keys or []) for copilot_id in ids]
    except ApiError as e:
        _fail(e)
    for result in results:
        for key in result.queued:
            console.print(f"queued   {result.copilot_id}/{key}", highlight=False)
        for skip in result.skipped:
            console.print(
                f"skipped  {result.copilot_id}/{skip.doc_key}: {skip.reason}", highlight=False
            )
    queued = sum(len(r.queued) for r in results)
    console.print(
        f"Queued {queued} document(s) for indexing; follow with `copilot docs --copilot ID`."
    )
    if keys and any(r.skipped for r in results):
        raise typer.Exit(1)


def _docs_table(documents: list[Any]) -> None:
    table = Table("document", "status", "chunks", "reason")
    for d in documents:
        color = {"indexed": "green", "failed": "red"}.get(d.status, "yellow")
        table.add_row(
            d.doc_key, f"[{color}]{d.status}[/{color}]", str(d.chunk_count), d.reason or ""
        )
    console.print(table)


@app.command()
def analytics(
    copilot: str = typer.Option(..., "--copilot", help="Copilot id."),
    since: str = typer.Option("7d", help="Start: 7d, 24h, or an ISO date/time."),
    until: str = typer.Option(None, help="End: an ISO date/time (default: now)."),
    top: int = typer.Option(10, min=1, max=100, help="Rows of the top lists."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    url: str = typer.Option(None, help="Chat API base URL (default: the local stack)."),
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """How a copilot does: conversations, outcomes and rates, CSAT, answer feedback, hand-off
    times, the top unanswered questions, the documents most cited and most down-voted."""
    from copilot_dev.client import ApiError
    from copilot_dev.reports import print_report

    try:
        report = _client(data_dir, url).analytics(copilot, since, until, top)
    except ApiError as e:
        _fail(e)
    if as_json:
        print(report.model_dump_json(indent=2))
        return
    print_report(console, report)


@app.command()
def transcripts(
    copilot: str = typer.Option(..., "--copilot", help="Copilot id."),
    since: str = typer.Option("7d", help="Start: 7d, 24h, or an ISO date/time."),
    until: str = typer.Option(None, help="End: an ISO date/time (default: now)."),
    fmt: str = typer.Option("jsonl", "--format", help="jsonl (a conversation a line) or csv."),
    out: Path = typer.Option(None, "--out", help="Write to this file (default: standard output)."),
    url: str = typer.Option(None, help="Chat API base URL (default: the local stack)."),
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Export a copilot's conversations of a period for review, PII redacted."""
    from copilot_dev.client import ApiError

    client = _client(data_dir, url)
    try:
        body = client.transcripts(copilot, since, until, fmt)
    except ApiError as e:
        _fail(e)
    count = (
        client.last_response.headers.get("X-Conversations", "?") if client.last_response else "?"
    )
    if out is None:
        sys.stdout.write(body)
        return
    out.write_text(body)
    err.print(f"{count} conversation(s) written to {out}")


@app.command("eval")
def eval_pack(
    pack: Path = typer.Argument(..., help="Evaluation pack: docs/ + questions.jsonl."),
    url: str = typer.Option(None, help="Chat API base URL (default: the local stack)."),
    local: bool = typer.Option(False, "--local", help="Start a private local stack, then stop it."),
    limit: int = typer.Option(None, min=1, help="Replay N questions spread over the pack."),
    json_out: Path = typer.Option(None, "--json", help="Write the full report to this file."),
    concurrency: int = typer.Option(4, min=1, help="Conversations replayed in parallel."),
    copilot_settings: Path = typer.Option(
        None, exists=True, help="JSON file of extra settings for the fresh copilot."
    ),
    index_timeout: float = typer.Option(1800, help="Seconds to wait for indexing."),
    calibrate: bool = typer.Option(
        False,
        "--calibrate",
        help="Before the replay, set the copilot's answer_bar (and answer_margin_weight) on "
        "half the questions (by id) so that it declines --decline of their unanswerable ones; "
        "the report adds the figures on the other half.",
    ),
    decline: float = typer.Option(
        0.85, min=0.0, max=1.0, help="With --calibrate: share of unanswerable questions to decline."
    ),
    strictness: str = typer.Option(
        None,
        help="Replay the questions at each of these strictness levels (e.g. low,medium,high) "
        "on the same index; the headline figures are medium's, and a table compares them.",
    ),
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Evaluate a fresh copilot on a pack: ingest its docs, replay its questions, score them."""
    import requests

    from copilot_dev import evaluation as ev
    from copilot_dev.client import ApiError

    try:
        if local and url:
            raise ev.EvalError("--local starts its own stack: leave out --url")
        the_pack = ev.load_pack(pack)
        options = ev.EvalOptions(
            limit,
            concurrency,
            ev.load_copilot_settings(copilot_settings),
            index_timeout,
            calibrate=calibrate,
            decline=decline,
            strictness=ev.parse_strictness(strictness),
        )
        if local:
            report = ev.run_local(the_pack, options, console=console)
        else:
            from copilot.adapters.aws.session import aws_client

            settings = _aws_settings(data_dir)
            s3 = aws_client(settings, "s3")
            report = ev.run_eval(
                _client(data_dir, url), s3, settings.bucket, the_pack, options, console
            )
    except (ev.EvalError, ApiError, requests.RequestException) as e:
        _fail(e)
    ev.print_report(report, console)
    if json_out:
        ev.write_json(report, json_out)
        console.print(f"Report written to {json_out}")


@app.command()
def openapi(out: Path = typer.Option(None, help="Write to this file instead of stdout.")) -> None:
    """Print (or write) the chat API's OpenAPI document."""
    from copilot.bootstrap import Container
    from copilot.config import Settings
    from copilot.entrypoints.http.openapi import build_openapi

    api = Container(Settings()).chat_api  # builds no service: the routes only
    text = json.dumps(build_openapi(api), indent=2) + "\n"
    if out:
        out.write_text(text)
    else:
        sys.stdout.write(text)


def main() -> None:
    app()
