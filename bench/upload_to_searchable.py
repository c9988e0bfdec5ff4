"""Upload-to-searchable latency through the local stack: put a file with a unique fact, then ask
about it every 50 ms until an answer cites the file (15 files, one at a time).

    .venv/bin/python bench/upload_to_searchable.py
"""

from __future__ import annotations

import statistics
import tempfile
import time
import uuid
from pathlib import Path

from copilot_dev.client import CopilotClient
from copilot_dev.demo import seed_demo
from copilot_dev.localstack import LocalStack, StackConfig

ROOT = Path(__file__).resolve().parents[1]
cfg = StackConfig.with_free_ports(ROOT, Path(tempfile.mkdtemp()))
with LocalStack(cfg) as st:
    c = CopilotClient(cfg.function_url("chat"), cfg.admin_api_key)
    cp, _ = seed_demo(c, st.client("s3"), cfg.bucket, ROOT / "infra" / "demo")
    s3 = st.client("s3")
    lat = []
    time.sleep(3)
    for i in range(15):
        word = f"zorblax{uuid.uuid4().hex[:6]}"
        s = c.start(cp.copilot_id)
        body = f"# Special offer {i}\n\n## Code\n\nThe discount code {word} gives 15 percent off helmets until Friday.".encode()
        t = time.perf_counter()
        s3.put_object(Bucket=cfg.bucket, Key=f"{cp.copilot_id}/offer-{i}.md", Body=body)
        while True:
            r = c.send(
                s.conversation_id, s.token, f"What does the discount code {word} give?"
            ).messages[-1]
            if any(x.source == f"offer-{i}.md" for x in r.citations):
                break
            if time.perf_counter() - t > 15:
                print("timeout")
                break
            time.sleep(0.05)
        lat.append(time.perf_counter() - t)
    lat.sort()
    print(
        f"upload->cited answer p50 {statistics.median(lat):.2f} s p95 {lat[int(0.95 * len(lat)) - 1]:.2f} s max {lat[-1]:.2f}"
    )
