"""Package ``serverless.yml`` offline with the pinned Serverless v3 and lint the result.

Runs ``serverless package`` (no AWS calls: dummy credentials, no dashboard org/app, no
``${aws:...}``/``${ssm:...}`` variables), then ``cfn-lint`` on the generated CloudFormation
template, then checks the template and the code artifact for the properties the deployment
relies on.

Needs ``cd infra/node && npm ci`` first; skipped (with the reason) when node or the local
serverless binary is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.deploy

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVERLESS_BIN = REPO_ROOT / "infra" / "node" / "node_modules" / ".bin" / "serverless"
LAYER_ARN = "arn:aws:lambda:us-east-1:123456789012:layer:deps:1"
CHROMA_URL = "https://chroma.example.internal:8000"
STAGE = "ci"

# W3005 ("DependsOn already enforced by a Ref") is raised on the HttpApiRoute* resources that
# Serverless v3 itself generates (DependsOn + Ref to the integration). It is redundant but
# harmless, and serverless.yml cannot remove a DependsOn from generated resources.
CFN_LINT_IGNORED = ["W3005"]


def _skip_reason() -> str | None:
    if shutil.which("node") is None or shutil.which("npx") is None:
        return "node/npx not installed (needed to run Serverless Framework v3)"
    if not SERVERLESS_BIN.exists():
        return f"{SERVERLESS_BIN.relative_to(REPO_ROOT)} missing: run `cd infra/node && npm ci`"
    return None


def _offline_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SLS_", "SERVERLESS_"))}
    env.update(
        {
            # Dummy credentials: `package` makes no AWS calls, but the provider wants credentials.
            "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
            "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "AWS_REGION": "us-east-1",
            "AWS_SDK_LOAD_CONFIG": "0",
            "AWS_CONFIG_FILE": str(home / "aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(home / "aws-credentials"),
            # Keep Serverless offline and non-interactive.
            "SLS_TELEMETRY_DISABLED": "1",
            "SLS_TRACKING_DISABLED": "1",
            "SLS_NOTIFICATIONS_MODE": "off",
            "SLS_INTERACTIVE_SETUP_DISABLE": "1",
            "CI": "1",
            # ~/.serverlessrc etc. go to a throwaway home.
            "HOME": str(home),
        }
    )
    return env


@pytest.fixture(scope="module")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("sls")
    home = work / "home"
    home.mkdir()
    pkg = work / "pkg"
    cmd = [
        str(SERVERLESS_BIN),
        "package",
        "--stage",
        STAGE,
        "--region",
        "us-east-1",
        f"--param=depsLayerArn={LAYER_ARN}",
        f"--param=chromaUrl={CHROMA_URL}",
        "--package",
        str(pkg),
    ]
    proc = subprocess.run(
        cmd,
        cwd=REPO_ROOT,
        env=_offline_env(home),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, (
        f"serverless package failed ({proc.returncode})\n"
        f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    )
    return pkg


@pytest.fixture(scope="module")
def template(packaged: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (packaged / "cloudformation-template-update-stack.json").read_text(encoding="utf-8")
    )
    return data


def _resources(template: dict[str, Any], rtype: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == rtype}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_cfn_lint_passes(packaged: Path) -> None:
    pytest.importorskip("cfnlint", reason="cfn-lint not installed in this interpreter")
    template_path = packaged / "cloudformation-template-update-stack.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from cfnlint.runner import main; sys.exit(main())",
            "--ignore-checks",
            *CFN_LINT_IGNORED,
            "--",
            str(template_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    # cfn-lint exit code is a bitmask: 2 = errors, 4 = warnings, 8 = informational.
    assert proc.returncode & (2 | 4) == 0, (
        f"cfn-lint reported errors/warnings ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    )


def test_functions_and_handlers(template: dict[str, Any]) -> None:
    functions = {
        v["Properties"]["FunctionName"]: v["Properties"]
        for v in _resources(template, "AWS::Lambda::Function").values()
    }
    expected = {
        f"copilot-{STAGE}-chat": ("functions/chat/main.lambda_handler", 1024, 29),
        f"copilot-{STAGE}-handoff": ("functions/handoff/main.lambda_handler", None, None),
        f"copilot-{STAGE}-ingest": ("functions/ingest/main.lambda_handler", 2048, 300),
        f"copilot-{STAGE}-ingestDeadLetters": (
            "functions/ingest/main.dead_letter_handler",
            512,
            29,
        ),
        f"copilot-{STAGE}-analyticsExport": ("functions/ingest/main.analytics_handler", 512, 60),
        f"copilot-{STAGE}-analyticsLost": ("functions/ingest/main.analytics_lost_handler", 256, 29),
    }
    assert set(functions) == set(expected)
    for name, (handler, memory, timeout) in expected.items():
        props = functions[name]
        assert props["Handler"] == handler
        assert props["Runtime"] == "python3.11"
        if memory is not None:
            assert props["MemorySize"] == memory
        if timeout is not None:
            assert props["Timeout"] == timeout
        assert props["Layers"] == [LAYER_ARN]
        env = props["Environment"]["Variables"]
        assert env["PYTHONPATH"] == "/var/task/shared:/opt/python"
        assert env["COPILOT_REGION"] == "us-east-1"
        assert env["COPILOT_CHROMA_URL"] == CHROMA_URL
        assert env["COPILOT_CHROMA_TOKEN"] == ""
        assert env["COPILOT_ADMIN_API_KEY_SSM_PARAM"] == f"/copilot/{STAGE}/admin-api-key"
        assert "COPILOT_ADMIN_API_KEY" not in env  # read from SSM at runtime, never baked in
        assert env["COPILOT_BUCKET"] == {"Ref": "KnowledgeBucket"}
        assert env["COPILOT_COPILOTS_TABLE"] == f"copilot-{STAGE}-copilots"
        assert env["COPILOT_CONVERSATIONS_TABLE"] == f"copilot-{STAGE}-conversations"
        assert env["COPILOT_DOCUMENTS_TABLE"] == f"copilot-{STAGE}-documents"


def test_http_routes(template: dict[str, Any]) -> None:
    routes = {
        v["Properties"]["RouteKey"]
        for v in _resources(template, "AWS::ApiGatewayV2::Route").values()
    }
    assert routes == {
        "ANY /copilots/{proxy+}",
        "ANY /conversations/{proxy+}",
        "ANY /admin/{proxy+}",
        "ANY /v3/directline/{proxy+}",
        "GET /openapi.json",
        "GET /widget.js",
        "GET /healthz",
        "ANY /hooks/{proxy+}",
        "GET /handoff/healthz",
    }


def test_http_api_is_throttled_at_the_edge(template: dict[str, Any]) -> None:
    (stage,) = _resources(template, "AWS::ApiGatewayV2::Stage").values()
    settings = stage["Properties"]["DefaultRouteSettings"]
    assert settings["ThrottlingRateLimit"] == 200
    assert settings["ThrottlingBurstLimit"] == 400


def _mappings(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Event source mappings by the queue they read."""
    return {
        m["Properties"]["EventSourceArn"]["Fn::GetAtt"][0]: m["Properties"]
        for m in _resources(template, "AWS::Lambda::EventSourceMapping").values()
    }


def test_ingest_event_source_mapping(template: dict[str, Any]) -> None:
    mappings = _mappings(template)
    assert set(mappings) == {
        "IngestQueue",
        "IngestDeadLetterQueue",
        "HubOutboxQueue",
        "HubPullQueue",
        "AnalyticsEventsTable",
        "AnalyticsLostQueue",
    }
    props = mappings["IngestQueue"]
    assert props["FunctionName"] == {"Fn::GetAtt": ["IngestLambdaFunction", "Arn"]}
    # A queue batch's files are embedded in one model call and written in batched requests;
    # the short window lets a bulk upload fill batches without delaying a single edit.
    assert props["BatchSize"] == 25
    assert props["MaximumBatchingWindowInSeconds"] == 1
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    # What the ingest queue gives up on is recorded as failed, not left pending.
    dead = mappings["IngestDeadLetterQueue"]
    assert dead["FunctionName"] == {"Fn::GetAtt": ["IngestDeadLettersLambdaFunction", "Arn"]}
    assert dead["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    res = template["Resources"]
    dlq_visibility = res["IngestDeadLetterQueue"]["Properties"]["VisibilityTimeout"]
    assert dlq_visibility >= 6 * res["IngestDeadLettersLambdaFunction"]["Properties"]["Timeout"]


def test_hub_outbox_is_fifo_and_feeds_the_handoff_function(template: dict[str, Any]) -> None:
    res = template["Resources"]
    for queue in ("HubOutboxQueue", "HubOutboxDeadLetterQueue"):
        props = res[queue]["Properties"]
        assert props["FifoQueue"] is True
        assert props["QueueName"].endswith(".fifo")
    handoff_timeout = res["HandoffLambdaFunction"]["Properties"]["Timeout"]
    assert res["HubOutboxQueue"]["Properties"]["VisibilityTimeout"] >= 6 * handoff_timeout
    props = _mappings(template)["HubOutboxQueue"]
    assert props["FunctionName"] == {"Fn::GetAtt": ["HandoffLambdaFunction", "Arn"]}
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    env = res["HandoffLambdaFunction"]["Properties"]["Environment"]["Variables"]
    assert env["COPILOT_HUB_OUTBOX_QUEUE_URL"] == {"Ref": "HubOutboxQueue"}
    assert env["COPILOT_HUB_SECRET_SSM_PREFIX"] == f"/copilot/{STAGE}/hub-secrets"
    assert not [
        k
        for k in env
        if k.startswith("COPILOT_HUB_SECRET_") and k != "COPILOT_HUB_SECRET_SSM_PREFIX"
    ]


def test_pull_jobs_run_one_per_invocation_within_the_handoff_function(
    template: dict[str, Any],
) -> None:
    """Hubs without webhooks are read by pull jobs: each job is one invocation of the hand-off
    function, reading for less than the function's timeout; the queue hides a running job for
    at least six timeouts; both functions may schedule jobs, and know the queue."""
    res = template["Resources"]
    handoff = res["HandoffLambdaFunction"]["Properties"]
    props = _mappings(template)["HubPullQueue"]
    assert props["FunctionName"] == {"Fn::GetAtt": ["HandoffLambdaFunction", "Arn"]}
    assert props["BatchSize"] == 1
    assert res["HubPullQueue"]["Properties"]["VisibilityTimeout"] >= 6 * handoff["Timeout"]
    for function in ("HandoffLambdaFunction", "ChatLambdaFunction"):
        env = res[function]["Properties"]["Environment"]["Variables"]
        assert env["COPILOT_HUB_PULL_QUEUE_URL"] == {"Ref": "HubPullQueue"}
        assert float(env["COPILOT_HUB_PULL_WINDOW_SECONDS"]) + 5 < handoff["Timeout"]


def test_analytics_events_stream_to_the_archive_and_nothing_is_dropped_silently(
    template: dict[str, Any],
) -> None:
    res = template["Resources"]
    table = res["AnalyticsEventsTable"]["Properties"]
    assert table["StreamSpecification"] == {"StreamViewType": "NEW_IMAGE"}
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    stream = _mappings(template)["AnalyticsEventsTable"]
    assert stream["FunctionName"] == {"Fn::GetAtt": ["AnalyticsExportLambdaFunction", "Arn"]}
    assert stream["BisectBatchOnFunctionError"] is True
    # Retried while the stream keeps the records (24 h); then to the on-failure queue, whose
    # consumer counts what was lost.
    assert stream["MaximumRecordAgeInSeconds"] == 86400
    assert stream["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::GetAtt": ["AnalyticsLostQueue", "Arn"]
    }
    lost = _mappings(template)["AnalyticsLostQueue"]
    assert lost["FunctionName"] == {"Fn::GetAtt": ["AnalyticsLostLambdaFunction", "Arn"]}
    bucket = res["AnalyticsBucket"]["Properties"]
    [rule] = [
        r for r in bucket["LifecycleConfiguration"]["Rules"] if r["Id"] == "AnalyticsRetention"
    ]
    assert rule["ExpirationInDays"] == 395  # the analyticsRetentionDays default
    env = res["ChatLambdaFunction"]["Properties"]["Environment"]["Variables"]
    assert env["COPILOT_ANALYTICS_BUCKET"] == {"Ref": "AnalyticsBucket"}


def test_queues_have_redrive(template: dict[str, Any]) -> None:
    res = template["Resources"]
    ingest = res["IngestQueue"]["Properties"]
    ingest_timeout = res["IngestLambdaFunction"]["Properties"]["Timeout"]
    assert ingest["VisibilityTimeout"] >= 6 * ingest_timeout
    for queue, dlq in (
        ("IngestQueue", "IngestDeadLetterQueue"),
        ("HubOutboxQueue", "HubOutboxDeadLetterQueue"),
        ("HubPullQueue", "HubPullDeadLetterQueue"),
    ):
        redrive = res[queue]["Properties"]["RedrivePolicy"]
        assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": [dlq, "Arn"]}
        assert redrive["maxReceiveCount"] == 5
        assert res[dlq]["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600


def test_bucket_notifies_ingest_queue(template: dict[str, Any]) -> None:
    res = template["Resources"]
    bucket = res["KnowledgeBucket"]
    props = bucket["Properties"]
    assert "IngestQueuePolicy" in _as_list(bucket.get("DependsOn", []))
    events = {
        c["Event"]: c["Queue"] for c in props["NotificationConfiguration"]["QueueConfigurations"]
    }
    assert events == {
        "s3:ObjectCreated:*": {"Fn::GetAtt": ["IngestQueue", "Arn"]},
        "s3:ObjectRemoved:*": {"Fn::GetAtt": ["IngestQueue", "Arn"]},
    }
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert set(props["PublicAccessBlockConfiguration"].values()) == {True}
    assert len(props["PublicAccessBlockConfiguration"]) == 4
    sse = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert sse["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"

    # The queue policy must admit exactly this bucket (by its deterministic name).
    bucket_name = props["BucketName"]["Fn::Sub"]
    statement = res["IngestQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
    assert statement["Principal"] == {"Service": "s3.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    source_arn = statement["Condition"]["ArnEquals"]["aws:SourceArn"]["Fn::Sub"]
    assert source_arn == f"arn:${{AWS::Partition}}:s3:::{bucket_name}"


def test_tables(template: dict[str, Any]) -> None:
    res = template["Resources"]
    expected_keys = {
        "CopilotsTable": [("copilot_id", "S", "HASH")],
        "ConversationsTable": [("pk", "S", "HASH"), ("sk", "N", "RANGE")],
        "DocumentsTable": [("copilot_id", "S", "HASH"), ("doc_key", "S", "RANGE")],
    }
    for logical_id, keys in expected_keys.items():
        props = res[logical_id]["Properties"]
        types = {a["AttributeName"]: a["AttributeType"] for a in props["AttributeDefinitions"]}
        schema = [
            (k["AttributeName"], types[k["AttributeName"]], k["KeyType"])
            for k in props["KeySchema"]
        ]
        assert schema == keys, logical_id
        assert props["BillingMode"] == "PAY_PER_REQUEST"
        assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert props["SSESpecification"] == {"SSEEnabled": True}
    ttl = res["ConversationsTable"]["Properties"]["TimeToLiveSpecification"]
    assert ttl == {"AttributeName": "expires_at", "Enabled": True}


def test_iam_is_scoped(template: dict[str, Any]) -> None:
    statements: list[dict[str, Any]] = []
    for role in _resources(template, "AWS::IAM::Role").values():
        for policy in role["Properties"].get("Policies", []):
            statements.extend(policy["PolicyDocument"]["Statement"])
    for policy in _resources(template, "AWS::IAM::Policy").values():
        statements.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    assert statements

    scoped_services = ("dynamodb:", "s3:", "sqs:", "ssm:")
    seen: set[str] = set()
    for st in statements:
        actions = [a for a in _as_list(st["Action"]) if a.startswith(scoped_services)]
        if not actions:
            continue
        seen.update(a.split(":")[0] for a in actions)
        assert all(not a.endswith(":*") and a != "*" for a in actions), st
        resources = _as_list(st["Resource"])
        assert "*" not in resources, f"unscoped Resource for {actions}: {st}"
        for r in resources:
            if isinstance(r, str):
                assert not r.endswith(":*") and "::*" not in r, st
    assert seen == {"dynamodb", "s3", "sqs", "ssm"}


def test_artifact_contents(packaged: Path) -> None:
    with zipfile.ZipFile(packaged / "copilot.zip") as zf:
        names = [n for n in zf.namelist() if not n.endswith("/")]
    assert names, "empty code artifact"
    outside = [n for n in names if not n.startswith(("functions/", "shared/copilot/"))]
    assert not outside, f"unexpected files in the Lambda zip: {outside[:20]}"
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert "shared/copilot/__init__.py" in names
    assert "shared/copilot/entrypoints/http/static/widget.js" in names  # GET /widget.js
    tooling = [n for n in names if "copilot_dev" in n or "/emulators/" in n or n.endswith("cli.py")]
    assert not tooling, f"development tooling in the Lambda zip: {tooling[:20]}"
    missing = [
        f"functions/{fn}/main.py"
        for fn in ("chat", "handoff", "ingest")
        if f"functions/{fn}/main.py" not in names
    ]
    assert not missing, f"handler modules missing from the artifact: {missing}"
