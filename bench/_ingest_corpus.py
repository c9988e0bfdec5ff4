"""Synthetic, deterministic knowledge files for bench/ingest.py.

Help-centre pages of a fictional software company ("Lumen Cloud"): Markdown and HTML pages of
2-6 KB of text with H1/H2/H3 headings, lists, tables and the odd code block; the HTML pages
carry the usual site chrome (header, navigation, breadcrumbs, footer, script) that the parser
has to strip. A long PDF manual (reportlab), one page of text per page. And small pages that
each state one unique, checkable fact, for the upload-to-searchable latency test.

Standard library plus reportlab (a dev dependency); everything is seeded, so runs compare.
"""

from __future__ import annotations

import html
import random
import re
from dataclasses import dataclass
from pathlib import Path

PRODUCTS = [
    "Lumen Drive",
    "Lumen Mail",
    "Lumen Meet",
    "Lumen Books",
    "Lumen Sign",
    "Lumen Vault",
    "Lumen Desk",
    "Lumen Forms",
    "Lumen Pay",
    "Lumen Analytics",
    "Lumen Backup",
    "Lumen Chat",
]
FEATURES = [
    "two-factor authentication",
    "single sign-on",
    "shared folders",
    "audit logs",
    "automatic backups",
    "billing alerts",
    "custom domains",
    "user provisioning",
    "data retention rules",
    "API tokens",
    "webhooks",
    "mobile sync",
    "offline mode",
    "guest access",
    "e-signature templates",
    "invoice reminders",
    "usage reports",
    "storage quotas",
    "role-based permissions",
    "IP allow lists",
    "email forwarding",
    "calendar sharing",
    "recording transcripts",
    "expense categories",
]
VERBS = [
    "set up",
    "turn on",
    "turn off",
    "configure",
    "troubleshoot",
    "manage",
    "export",
    "import",
    "review",
    "update",
    "restore",
    "limit",
    "share",
    "schedule",
    "audit",
    "migrate",
]
ROLES = ["account owner", "workspace admin", "billing admin", "team manager", "member", "guest"]
PLANS = ["Starter", "Team", "Business", "Enterprise"]
PLACES = [
    "Settings",
    "Admin console",
    "Billing page",
    "Security tab",
    "Integrations page",
    "Members list",
    "Reports area",
    "Notifications panel",
    "Storage overview",
]
OPENERS = [
    "This article explains how to {verb} {feature} in {product}.",
    "Use this guide to {verb} {feature} for your organization in {product}.",
    "Admins often ask how to {verb} {feature}; the steps below work on every plan from {plan} up.",
    "If your team relies on {product}, {feature} helps you keep work safe and organized.",
]
SENTENCES = [
    "Only the {role} can change this setting, and the change applies to every member of the workspace.",
    "Open the {place}, select {feature}, and choose Save to apply the change.",
    "Changes usually take effect within {n} minutes, although large workspaces can take up to an hour.",
    "If the option is greyed out, your plan may not include it: {feature} is available on the {plan} plan and above.",
    "We recommend testing the change with a small group before you roll it out to everyone.",
    "You can undo the change at any time from the same page, and nothing is deleted when you do.",
    "Members receive an email notification when a {role} changes {feature}.",
    "The audit log records who made the change, when, and from which IP address.",
    "For workspaces with more than {big} members, schedule the change outside business hours.",
    "Mobile apps pick up the new setting the next time they sync, usually within {n} minutes.",
    "If you see an error, sign out, clear your browser cache, and try again before contacting support.",
    "Exports are delivered as a ZIP archive to the email address of the {role}.",
    "Keep at least two people with the {role} role so that you never lose access to {product}.",
    "The {place} shows a banner while the change is in progress; you can keep working meanwhile.",
    "Data stays in the region you chose when you created the workspace, and {feature} does not move it.",
    "Third-party integrations that use {feature} must be re-authorised after the change.",
    "You are not billed for {feature} during the first {n} days of a trial.",
    "Support can help you with {feature} by chat or phone on weekdays from 8 a.m. to 6 p.m.",
    "Guests cannot see this page, and members only see the settings that apply to them.",
    "When {feature} is turned off, existing items stay available in read-only mode for {n} days.",
]
STEPS = [
    "Sign in to {product} as the {role}.",
    "Go to {place}.",
    "Select {feature}.",
    "Choose Edit, then make your changes.",
    "Review the summary and select Save.",
    "Wait for the confirmation email, then tell your team.",
    "Check the audit log to confirm the change.",
]
SECTIONS = [
    "Before you begin",
    "Steps",
    "What happens next",
    "Limits",
    "Troubleshooting",
    "Frequently asked questions",
    "Permissions",
    "Billing",
    "Related settings",
]
CODE = """```bash
curl -H "Authorization: Bearer $LUMEN_TOKEN" \\
  https://api.lumen.example/v2/{slug}?limit=100
```"""


def _fill(rng: random.Random, template: str, ctx: dict[str, str]) -> str:
    values = {
        "verb": ctx["verb"],
        "feature": ctx["feature"],
        "product": ctx["product"],
        "plan": rng.choice(PLANS),
        "role": rng.choice(ROLES),
        "place": rng.choice(PLACES),
        "n": str(rng.choice([5, 10, 15, 30, 14, 60])),
        "big": str(rng.choice([500, 1000, 5000])),
        "slug": ctx["feature"].replace(" ", "-"),
    }
    return template.format(**values)


@dataclass
class Block:
    kind: str  # "p", "ul", "ol", "table", "code"
    items: list[str]


@dataclass
class Page:
    slug: str
    title: str
    intro: str
    sections: list[tuple[int, str, list[Block]]]  # (level 2|3, heading, blocks)


def _paragraph(rng: random.Random, ctx: dict[str, str], n: int) -> str:
    return " ".join(_fill(rng, rng.choice(SENTENCES), ctx) for _ in range(n))


def help_page(index: int, seed: int, min_chars: int = 2000, max_chars: int = 6000) -> Page:
    rng = random.Random(seed * 100_003 + index)
    ctx = {
        "verb": rng.choice(VERBS),
        "feature": rng.choice(FEATURES),
        "product": rng.choice(PRODUCTS),
    }
    title = f"{ctx['verb'].capitalize()} {ctx['feature']} in {ctx['product']}"
    slug = f"{index:04d}-{ctx['verb']}-{ctx['feature']}".replace(" ", "-")
    target = rng.randint(min_chars, max_chars)
    page = Page(slug, title, _fill(rng, rng.choice(OPENERS), ctx), [])
    size = len(title) + len(page.intro)
    headings = rng.sample(SECTIONS, len(SECTIONS))
    while size < target - 150:
        heading = headings[len(page.sections) % len(headings)]
        level = 3 if page.sections and rng.random() < 0.25 else 2
        blocks: list[Block] = []
        for _ in range(rng.randint(1, 3)):
            roll = rng.random()
            if roll < 0.55:
                blocks.append(Block("p", [_paragraph(rng, ctx, rng.randint(2, 5))]))
            elif roll < 0.75:
                steps = rng.sample(STEPS, rng.randint(3, 6))
                blocks.append(Block("ol", [_fill(rng, s, ctx) for s in steps]))
            elif roll < 0.88:
                items = [_fill(rng, rng.choice(SENTENCES), ctx) for _ in range(rng.randint(2, 4))]
                blocks.append(Block("ul", items))
            elif roll < 0.96:
                rows = [
                    f"{p}|{rng.choice(['Included', 'Add-on', 'Not available'])}|"
                    f"{rng.choice([5, 25, 100, 'Unlimited'])}"
                    for p in PLANS
                ]
                blocks.append(Block("table", ["Plan|Availability|Limit", *rows]))
            else:
                blocks.append(Block("code", [_fill(rng, CODE, ctx)]))
        page.sections.append((level, heading, blocks))
        size += len(heading) + sum(len(i) + 4 for b in blocks for i in b.items)
    return page


def to_markdown(page: Page) -> str:
    out = [f"# {page.title}", "", page.intro, ""]
    for level, heading, blocks in page.sections:
        out += ["#" * level + " " + heading, ""]
        for b in blocks:
            if b.kind == "p":
                out.append(b.items[0])
            elif b.kind == "ol":
                out += [f"{i}. {item}" for i, item in enumerate(b.items, 1)]
            elif b.kind == "ul":
                out += [f"- {item}" for item in b.items]
            elif b.kind == "table":
                head, *rows = b.items
                out += [f"| {' | '.join(head.split('|'))} |", "|---|---|---|"]
                out += [f"| {' | '.join(r.split('|'))} |" for r in rows]
            else:
                out.append(b.items[0])
            out.append("")
    return "\n".join(out)


_CHROME_TOP = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title} | Lumen Help Center</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/assets/help.css"><script src="/assets/analytics.js" defer></script>
</head><body>
<header class="site-header"><a class="logo" href="/">Lumen Help Center</a>
<form class="search" action="/search"><input name="q" placeholder="Search help"><button>Search</button></form></header>
<nav class="top-nav"><ul><li><a href="/drive">Drive</a></li><li><a href="/mail">Mail</a></li>
<li><a href="/meet">Meet</a></li><li><a href="/billing">Billing</a></li><li><a href="/security">Security</a></li>
<li><a href="/admin">Admin</a></li><li><a href="/status">Status</a></li></ul></nav>
<nav class="breadcrumbs" aria-label="breadcrumb"><a href="/">Home</a> › <a href="/{product_slug}">{product}</a> › {title}</nav>
<div class="layout"><aside class="sidebar"><h4>In this section</h4><ul>
<li><a href="#">Getting started</a></li><li><a href="#">Account settings</a></li><li><a href="#">Security</a></li>
<li><a href="#">Billing and plans</a></li><li><a href="#">Troubleshooting</a></li></ul></aside>
<main id="content"><article>
"""
_CHROME_BOTTOM = """</article>
<div class="feedback">Was this article helpful? <button>Yes</button> <button>No</button></div></main></div>
<footer class="site-footer"><p>© 2025 Lumen Cloud, Inc. · <a href="/privacy">Privacy</a> ·
<a href="/terms">Terms</a> · <a href="/contact">Contact support</a></p></footer>
<script>window.dataLayer=window.dataLayer||[];function gtag(){{dataLayer.push(arguments);}}gtag('js',new Date());</script>
</body></html>
"""


def to_html(page: Page) -> str:
    e = html.escape
    product = page.title.rsplit(" in ", 1)[-1]
    out = [
        _CHROME_TOP.format(
            title=e(page.title), product=e(product), product_slug=product.lower().replace(" ", "-")
        ),
        f"<h1>{e(page.title)}</h1>",
        f'<p class="lead">{e(page.intro)}</p>',
    ]
    for level, heading, blocks in page.sections:
        out.append(f"<h{level}>{e(heading)}</h{level}>")
        for b in blocks:
            if b.kind == "p":
                out.append(f"<p>{e(b.items[0])}</p>")
            elif b.kind in ("ol", "ul"):
                out.append(
                    f"<{b.kind}>" + "".join(f"<li>{e(i)}</li>" for i in b.items) + f"</{b.kind}>"
                )
            elif b.kind == "table":
                head, *rows = b.items
                out.append(
                    "<table><thead><tr>"
                    + "".join(f"<th>{e(c)}</th>" for c in head.split("|"))
                    + "</tr></thead><tbody>"
                    + "".join(
                        "<tr>" + "".join(f"<td>{e(c)}</td>" for c in r.split("|")) + "</tr>"
                        for r in rows
                    )
                    + "</tbody></table>"
                )
            else:
                code = b.items[0].strip("`").removeprefix("bash\n").strip()
                out.append(f"<pre><code>{e(code)}</code></pre>")
    out.append(_CHROME_BOTTOM.format())
    return "\n".join(out)


def write_help_pages(folder: Path, count: int, fmt: str, seed: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        page = help_page(i, seed)
        text = to_markdown(page) if fmt == "md" else to_html(page)
        path = folder / f"{page.slug}.{fmt}"
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


def write_pdf_manual(path: Path, pages: int, seed: int) -> int:
    """A product manual with one chapter section per page; returns the page count."""
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import cm
    from reportlab.platypus import PageBreak, Paragraph, SimpleDocTemplate, Spacer

    styles = getSampleStyleSheet()
    body, h1, h2 = styles["BodyText"], styles["Heading1"], styles["Heading2"]
    story: list[object] = []
    for n in range(pages):
        rng = random.Random(seed * 7919 + n)
        ctx = {
            "verb": rng.choice(VERBS),
            "feature": rng.choice(FEATURES),
            "product": rng.choice(PRODUCTS),
        }
        story.append(Paragraph(f"{n + 1}. {ctx['verb'].capitalize()} {ctx['feature']}", h1))
        chars = 0
        target = rng.randint(2200, 3200)  # a page of running text: ~400-500 words
        while chars < target:
            if rng.random() < 0.3:
                heading = rng.choice(SECTIONS)
                story.append(Paragraph(heading, h2))
                chars += len(heading)
            para = _paragraph(rng, ctx, rng.randint(3, 5))
            story.append(Paragraph(html.escape(para), body))
            chars += len(para)
        story.append(Spacer(1, 0.2 * cm))
        if n < pages - 1:
            story.append(PageBreak())
    doc = SimpleDocTemplate(
        str(path),
        pagesize=A4,
        leftMargin=2 * cm,
        rightMargin=2 * cm,
        topMargin=1.5 * cm,
        bottomMargin=1.5 * cm,
        title="Lumen Cloud Administrator Manual",
        author="Lumen Cloud",
    )
    doc.build(story)
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(path.read_bytes())
    try:
        return len(document)
    finally:
        document.close()


# --- unique facts for the latency test -----------------------------------------------------------

FACT_TEMPLATES = [
    (
        "The pickup locker at the {place} depot",
        "What is the access code of the pickup locker at the {place} depot?",
        "The access code of the pickup locker at the {place} depot is {code}.",
    ),
    (
        "Warranty of the {place} trailer",
        "How long is the warranty on the {place} trailer?",
        "The {place} trailer comes with a warranty of {days} days from the date of delivery.",
    ),
    (
        "Opening hours of the {place} service point",
        "When does the {place} service point open on Saturdays?",
        "On Saturdays the {place} service point opens at {hour} a.m. and closes at 2 p.m.",
    ),
    (
        "The {place} loyalty programme",
        "How many points does a member of the {place} loyalty programme earn per dollar?",
        "Every member of the {place} loyalty programme earns {points} points per dollar spent.",
    ),
]
PLACE_NAMES = [
    "Zephyrine",
    "Quillmoor",
    "Brackenholt",
    "Vantorra",
    "Oskelund",
    "Marrowdale",
    "Tindrel",
    "Caskavin",
    "Helmsgrove",
    "Pyrewick",
    "Lunacre",
    "Drovenmere",
    "Feldspire",
    "Ashvale",
    "Corrimont",
    "Wrenhallow",
    "Glimmerton",
    "Sablecrest",
    "Thornquay",
    "Ivelmoor",
    "Kestrelby",
    "Norrowind",
    "Ombrefield",
    "Palisade Reach",
    "Rookharbor",
    "Silverbourne",
    "Umberfall",
    "Verdigris Point",
    "Wychcombe",
    "Yarrowgate",
    "Zinderfell",
    "Amberlowe",
    "Bellhaven",
    "Cindermoor",
    "Dunmarrow",
    "Elderquay",
    "Foxbarrow",
    "Gallowmere",
    "Hollowick",
    "Ironvale",
]


@dataclass
class FactDoc:
    doc_key: str
    question: str
    text: str


def fact_docs(count: int, seed: int) -> list[FactDoc]:
    rng = random.Random(seed)
    docs = []
    for i in range(count):
        place = PLACE_NAMES[i % len(PLACE_NAMES)] + ("" if i < len(PLACE_NAMES) else f" {i}")
        title_t, question_t, fact_t = FACT_TEMPLATES[i % len(FACT_TEMPLATES)]
        values = {
            "place": place,
            "code": str(rng.randint(10_000, 99_999)),
            "hour": str(rng.choice([7, 8, 9, 10])),
            "points": str(rng.randint(2, 9)),
            "days": str(rng.randint(120, 999)),
        }
        title = title_t.format(**values)
        page = help_page(i, seed + 1, 1500, 2500)  # filler help text around the fact
        filler = to_markdown(page).split("\n", 2)[2]
        text = (
            f"# {title}\n\n{fact_t.format(**values)} Ask at the counter if you need help.\n\n"
            f"{filler}"
        )
        slug = place.lower().replace(" ", "-")
        docs.append(FactDoc(f"latency/{i:03d}-{slug}.md", question_t.format(**values), text))
    return docs


# --- many small FAQ files, from the eval packs' own text ------------------------------------


def write_faq_files(folder: Path, count: int, packs: Path, seed: int = 18) -> list[Path]:
    """``count`` FAQ-sized Markdown files (a question as the title, one to three paragraphs:
    a few hundred characters), cut deterministically from the text of the eval packs'
    documents (stackfaq, mtrag, dstc11): real wording, many files, little text each."""
    rng = random.Random(seed)
    paragraphs: list[str] = []
    titles: list[str] = []
    for pack in ("stackfaq", "mtrag", "dstc11"):
        for path in sorted((packs / pack / "docs").glob("*.md")):
            lines = path.read_text(encoding="utf-8", errors="replace").split("\n\n")
            for block in lines:
                block = block.strip()
                if block.startswith("# "):
                    titles.append(block[2:].split("\n")[0][:120])
                elif 80 <= len(block) <= 600 and not block.startswith(("#", "|", "```")):
                    paragraphs.append(block)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for n in range(count):
        body = "\n\n".join(rng.sample(paragraphs, rng.randint(1, 3)))[:900]
        title = titles[(n * 7919) % len(titles)]
        path = folder / f"faq-{n:05d}.md"
        path.write_text(f"# {title}\n\n{body}\n", encoding="utf-8")
        out.append(path)
    return out


def write_scale_files(
    folder: Path, chunks: int, per_file: int, mtrag_docs: Path, seed: int = 18
) -> list[Path]:
    """Files that chunk into ``chunks`` chunks in all, ``per_file`` per file: each a title and
    sections of one paragraph (under the chunker's 700-character target, so one chunk each) of
    sentences drawn at random from the MTRAG pack's documents. Deterministic; no two chunks
    share their text, so no embedding is reused."""
    rng = random.Random(seed)
    sentences: list[str] = []
    titles: list[str] = []
    for path in sorted(mtrag_docs.glob("*.md")):
        for block in path.read_text(encoding="utf-8", errors="replace").split("\n\n"):
            block = block.strip()
            if block.startswith("# "):
                titles.append(block[2:].split("\n")[0][:80])
            elif block and not block.startswith(("#", "|", "```", "-", "*")):
                for sentence in re.split(r"(?<=[.!?])\s+", block.replace("\n", " ")):
                    if 30 <= len(sentence) <= 250:
                        sentences.append(sentence)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    n = 0
    while n * per_file < chunks:
        count = min(per_file, chunks - n * per_file)
        parts = [f"# {rng.choice(titles)} ({n})"]
        for s in range(count):
            paragraph = ""
            while len(paragraph) < 450:
                paragraph += rng.choice(sentences) + " "
            parts.append(f"## {rng.choice(titles)} — part {s + 1}\n\n{paragraph[:680].strip()}")
        path = folder / f"kb-{n:05d}.md"
        path.write_text("\n\n".join(parts) + "\n", encoding="utf-8")
        out.append(path)
        n += 1
    return out
