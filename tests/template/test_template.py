"""Offline checks of template.yaml (AWS SAM): cfn-lint, then the SAM transform.

No AWS account, credentials or network are used: the SAM translator runs locally with
a stub managed-policy loader, the region is pinned, AWS config files are ignored and
sockets are blocked while it runs.

Each structural check is a plain function (check_*) that raises AssertionError; the
positive tests run it on the real template, and the negative tests run it on a broken
in-memory copy to prove it can fail.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable
from unittest import mock

import pytest

# Pin the SAM translator's view of AWS before it is imported: a fixed region (so the
# partition is "aws"), no profile or config files from the developer's machine, and
# no instance-metadata look-ups.
for _var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
    os.environ.pop(_var, None)
os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
os.environ["AWS_REGION"] = "us-east-1"
os.environ["AWS_CONFIG_FILE"] = os.devnull
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"

import cfnlint.api  # noqa: E402
from samtranslator.translator.managed_policy_translator import ManagedPolicyLoader  # noqa: E402
from samtranslator.translator.transform import transform  # noqa: E402
from samtranslator.yaml_helper import yaml_parse  # noqa: E402

# The translator warns about metrics it never publishes (it publishes only inside AWS).
logging.getLogger("samtranslator.metrics").setLevel(logging.ERROR)

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"

Template = dict[str, Any]

EXPECTED_ENV = {
    "TABLE_NAME": {"Ref": "Table"},
    "JWT_SECRET": {"Ref": "JwtSecret"},
    "JWT_PUBLIC_KEY": {"Ref": "JwtPublicKey"},
    "JWT_ISSUER": {"Ref": "JwtIssuer"},
    "JWT_AUDIENCE": {"Ref": "JwtAudience"},
    "RUN_TIME_LIMIT_MS": {"Ref": "RunTimeLimitMs"},
    "HEARTBEAT_DEADLINE_MS": {"Ref": "HeartbeatDeadlineMs"},
    "MAX_ACTIVE_RUNS_PER_USER": {"Ref": "MaxActiveRunsPerUser"},
    "DAILY_TOKEN_BUDGET_PER_USER": {"Ref": "DailyTokenBudgetPerUser"},
    "DAILY_TOKEN_BUDGET_PER_TENANT": {"Ref": "DailyTokenBudgetPerTenant"},
    "STREAM_FLUSH_MS": {"Ref": "StreamFlushMs"},
    "DEFAULT_AGENT": {"Ref": "DefaultAgent"},
    "RUN_DISPATCH": "async",
    "HANDOFF_MARGIN_MS": "5000",
    "LLM_PROVIDER": {"Ref": "LlmProvider"},
    "LLM_MODEL": {"Ref": "LlmModel"},
    "LLM_BASE_URL": {"Ref": "LlmBaseUrl"},
    "LLM_API_KEY": {"Ref": "LlmApiKey"},
    "LLM_SYSTEM_PROMPT": {"Ref": "LlmSystemPrompt"},
    "LLM_MAX_TOKENS": {"Ref": "LlmMaxTokens"},
    "LLM_TEMPERATURE": {"Ref": "LlmTemperature"},
    "LLM_TOOLS": {"Ref": "LlmTools"},
    "LLM_TOOLS_APPROVAL": {"Ref": "LlmToolsApproval"},
    "APPROVAL_TIMEOUT_MS": {"Ref": "ApprovalTimeoutMs"},
    "MCP_SERVERS": {"Ref": "McpServers"},
    "RUST_LOG": {"Ref": "LogLevel"},
}
BEDROCK_MODEL_ARN = "arn:${AWS::Partition}:bedrock:${AWS::Region}::foundation-model/${LlmModel}"
SELF_ARN = "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:${AWS::StackName}-wsexec"
DYNAMODB_ACTIONS = {
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:Query",
}
MANAGE_CONNECTIONS_ARN = (
    "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:"
    "${WebSocketApi}/${StageName}/*/@connections/*"
)
INTEGRATION_URI = (
    "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/"
    "functions/${Function.Arn}/invocations"
)
API_SOURCE_ARN = "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${WebSocketApi}/*"
CLOUDWATCH_RETENTION_DAYS = [
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731,
    1096, 1827, 2192, 2557, 2922, 3288, 3653,
]  # fmt: skip


# --------------------------------------------------------------------------- helpers
def load_sam() -> Template:
    """The SAM template as a dict, short-form intrinsics (!Ref) in long form."""
    return yaml_parse(TEMPLATE.read_text(encoding="utf-8"))


class _NoNetwork(socket.socket):
    def connect(self, *args: Any, **kwargs: Any) -> None:  # pragma: no cover - only on a regression
        raise AssertionError(f"the offline SAM transform tried to open a connection: {args}")

    connect_ex = connect  # type: ignore[assignment]


def to_cloudformation(sam: Template) -> Template:
    """Run the SAM transform offline, as `sam package` + CloudFormation would."""
    sam = copy.deepcopy(sam)
    # `sam package` replaces the local CodeUri (".") with the uploaded artifact's S3
    # URI before the transform runs; the translator accepts only the latter.
    sam["Resources"]["Function"]["Properties"]["CodeUri"] = "s3://wsexec-artifacts/wsexec.zip"
    loader = mock.Mock(spec=ManagedPolicyLoader)
    # Only consulted for managed policies named in Policies; the template names none.
    loader.load.return_value = {}
    with mock.patch.object(socket, "socket", _NoNetwork), mock.patch.object(
        socket, "create_connection", side_effect=AssertionError("network use in offline transform")
    ):
        return transform(sam, {}, loader)


def resources_of(cfn: Template, rtype: str) -> dict[str, Template]:
    return {name: r for name, r in cfn["Resources"].items() if r["Type"] == rtype}


def only(cfn: Template, rtype: str) -> tuple[str, Template]:
    found = resources_of(cfn, rtype)
    assert len(found) == 1, f"expected exactly one {rtype}, found {sorted(found)}"
    return next(iter(found.items()))


def props(resource: Template) -> Template:
    return resource.get("Properties", {})


def has_intrinsic(value: Any) -> bool:
    if isinstance(value, dict):
        return any(k == "Ref" or k.startswith("Fn::") or has_intrinsic(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_intrinsic(v) for v in value)
    return False


def function_logical_id(cfn: Template) -> str:
    name, _ = only(cfn, "AWS::Lambda::Function")
    return name


def refers_to(value: Any, logical_id: str) -> bool:
    """True if value is Ref/GetAtt of logical_id, or a Sub string naming it."""
    if isinstance(value, dict):
        if value.get("Ref") == logical_id:
            return True
        getatt = value.get("Fn::GetAtt")
        if isinstance(getatt, list) and getatt and getatt[0] == logical_id:
            return True
        sub = value.get("Fn::Sub")
        if isinstance(sub, str):
            return "${" + logical_id + "}" in sub or "${" + logical_id + "." in sub
    return False


# ---------------------------------------------------------------------- the checks
def check_function(cfn: Template) -> None:
    name, fn = only(cfn, "AWS::Lambda::Function")
    p = props(fn)
    assert p["Runtime"] == "provided.al2023"
    assert p["Architectures"] == ["arm64"]
    assert p["Handler"] == "bootstrap"
    assert p["MemorySize"] == 256
    assert p["Timeout"] == 900
    assert p["FunctionName"] == {"Fn::Sub": "${AWS::StackName}-wsexec"}
    _, invoke_config = only(cfn, "AWS::Lambda::EventInvokeConfig")
    ic = props(invoke_config)
    assert (ic["MaximumRetryAttempts"], ic["MaximumEventAgeInSeconds"]) == (2, 240)
    assert fn["Metadata"] == {"BuildMethod": "rust-cargolambda", "BuildProperties": {"Binary": "wsexec"}}
    log_config = p["LoggingConfig"]
    assert log_config["LogFormat"] == "JSON"
    assert log_config["SystemLogLevel"] == "WARN"
    assert log_config["ApplicationLogLevel"] == {"Fn::FindInMap": ["LogLevels", {"Ref": "LogLevel"}, "Lambda"]}
    assert refers_to(log_config["LogGroup"], "LogGroup")


def check_environment(cfn: Template) -> None:
    _, fn = only(cfn, "AWS::Lambda::Function")
    env = props(fn)["Environment"]["Variables"]
    assert env == EXPECTED_ENV, f"environment differs: {sorted(env)}"
    assert "CONNECTIONS_ENDPOINT" not in env


def check_api(cfn: Template) -> None:
    api_id, api = only(cfn, "AWS::ApiGatewayV2::Api")
    assert api_id == "WebSocketApi"
    assert props(api)["ProtocolType"] == "WEBSOCKET"
    assert props(api)["RouteSelectionExpression"] == "$request.body.type"


def check_routes(cfn: Template) -> None:
    integration_id, integration = only(cfn, "AWS::ApiGatewayV2::Integration")
    ip = props(integration)
    assert ip["IntegrationType"] == "AWS_PROXY"
    assert refers_to(ip["ApiId"], "WebSocketApi")
    assert ip["IntegrationUri"] == {"Fn::Sub": INTEGRATION_URI}
    assert refers_to(ip["IntegrationUri"], function_logical_id(cfn))

    routes = resources_of(cfn, "AWS::ApiGatewayV2::Route")
    keys = sorted(props(r)["RouteKey"] for r in routes.values())
    assert keys == ["$connect", "$default", "$disconnect"], f"route keys: {keys}"
    for name, route in routes.items():
        rp = props(route)
        assert refers_to(rp["ApiId"], "WebSocketApi"), name
        assert rp.get("Target") == {"Fn::Sub": "integrations/${" + integration_id + "}"}, (
            f"{name} does not target the integration"
        )


def check_default_route_response(cfn: Template) -> None:
    routes = resources_of(cfn, "AWS::ApiGatewayV2::Route")
    default = [n for n, r in routes.items() if props(r)["RouteKey"] == "$default"]
    assert len(default) == 1, "exactly one $default route"
    default_id = default[0]
    assert props(routes[default_id]).get("RouteResponseSelectionExpression") == "$default"
    _, response = only(cfn, "AWS::ApiGatewayV2::RouteResponse")
    assert props(response)["RouteResponseKey"] == "$default"
    assert props(response)["RouteId"] == {"Ref": default_id}
    assert refers_to(props(response)["ApiId"], "WebSocketApi")
    for name, route in routes.items():
        if name != default_id:
            assert "RouteResponseSelectionExpression" not in props(route), f"{name} should be one-way"


def check_deployment_and_stage(cfn: Template) -> None:
    dep_id, dep = only(cfn, "AWS::ApiGatewayV2::Deployment")
    depends = dep.get("DependsOn", [])
    depends = [depends] if isinstance(depends, str) else depends
    routes = resources_of(cfn, "AWS::ApiGatewayV2::Route")
    missing = set(routes) - set(depends)
    assert not missing, f"deployment can run before routes {sorted(missing)} exist"
    _, stage = only(cfn, "AWS::ApiGatewayV2::Stage")
    sp = props(stage)
    assert sp["StageName"] == {"Ref": "StageName"}
    assert sp["DeploymentId"] == {"Ref": dep_id}
    assert refers_to(sp["ApiId"], "WebSocketApi")
    settings = sp["DefaultRouteSettings"]
    assert settings["ThrottlingBurstLimit"] == {"Ref": "StageThrottlingBurstLimit"}
    assert settings["ThrottlingRateLimit"] == {"Ref": "StageThrottlingRateLimit"}
    params = cfn["Parameters"]
    burst = params["StageThrottlingBurstLimit"]["Default"]
    rate = params["StageThrottlingRateLimit"]["Default"]
    assert isinstance(burst, int) and isinstance(rate, (int, float))
    assert 0 < rate <= 10_000 and 0 < burst <= 5_000, "within API Gateway's account limits"
    assert burst >= rate


def check_api_permission(cfn: Template) -> None:
    fn_id = function_logical_id(cfn)
    perms = [
        props(p)
        for p in resources_of(cfn, "AWS::Lambda::Permission").values()
        if props(p).get("Principal") == "apigateway.amazonaws.com"
    ]
    assert len(perms) == 1, "one API Gateway invoke permission"
    perm = perms[0]
    assert perm["Action"] == "lambda:InvokeFunction"
    assert refers_to(perm["FunctionName"], fn_id)
    assert perm["SourceArn"] == {"Fn::Sub": API_SOURCE_ARN}


def check_sweep_schedule(cfn: Template) -> None:
    fn_id = function_logical_id(cfn)
    rule_id, rule = only(cfn, "AWS::Events::Rule")
    rp = props(rule)
    assert rp["ScheduleExpression"] == "rate(1 minute)"
    assert rp.get("State", "ENABLED") == "ENABLED"
    assert len(rp["Targets"]) == 1
    target = rp["Targets"][0]
    assert target["Arn"] == {"Fn::GetAtt": [fn_id, "Arn"]}
    assert "Input" not in target and "InputPath" not in target, "the function gets the Scheduled Event itself"
    perms = [
        props(p)
        for p in resources_of(cfn, "AWS::Lambda::Permission").values()
        if props(p).get("Principal") == "events.amazonaws.com"
    ]
    assert len(perms) == 1
    assert refers_to(perms[0]["FunctionName"], fn_id)
    assert perms[0]["SourceArn"] == {"Fn::GetAtt": [rule_id, "Arn"]}


def check_iam(cfn: Template) -> None:
    _, fn = only(cfn, "AWS::Lambda::Function")
    role_ref = props(fn)["Role"]
    assert "Fn::GetAtt" in role_ref, "the function uses the role generated here"
    role = cfn["Resources"][role_ref["Fn::GetAtt"][0]]
    assert role["Type"] == "AWS::IAM::Role"
    rp = props(role)
    # Only CloudWatch Logs writing comes from a managed policy.
    managed = rp.get("ManagedPolicyArns", [])
    assert len(managed) == 1 and str(managed[0]).endswith(":policy/service-role/AWSLambdaBasicExecutionRole")

    statements = [s for policy in rp["Policies"] for s in policy["PolicyDocument"]["Statement"]]
    # Bedrock is granted only under the UseBedrock condition (the provider is bedrock).
    conditional = [st for st in statements if "Fn::If" in st]
    assert len(conditional) == 1, conditional
    cond, bedrock, otherwise = conditional[0]["Fn::If"]
    assert cond == "UseBedrock" and otherwise == {"Ref": "AWS::NoValue"}
    assert cfn["Conditions"]["UseBedrock"] == {"Fn::Equals": [{"Ref": "LlmProvider"}, "bedrock"]}
    assert bedrock["Effect"] == "Allow"
    assert bedrock["Action"] == ["bedrock:InvokeModelWithResponseStream"]
    assert bedrock["Resource"] == [{"Fn::Sub": BEDROCK_MODEL_ARN}]
    statements = [st for st in statements if "Fn::If" not in st]
    actions: dict[str, list[Any]] = {}
    for st in statements:
        assert st["Effect"] == "Allow"
        st_actions = [st["Action"]] if isinstance(st["Action"], str) else st["Action"]
        st_resources = [st["Resource"]] if not isinstance(st["Resource"], list) else st["Resource"]
        for action in st_actions:
            assert "*" not in action, f"wildcard action {action}"
            actions.setdefault(action, []).extend(st_resources)
    assert set(actions) == DYNAMODB_ACTIONS | {"execute-api:ManageConnections", "lambda:InvokeFunction"}, sorted(actions)

    table_resources = [{"Fn::GetAtt": ["Table", "Arn"]}, {"Fn::Sub": "${Table.Arn}/index/*"}]
    for action in DYNAMODB_ACTIONS:
        assert sorted(map(json.dumps, actions[action])) == sorted(map(json.dumps, table_resources)), action
    assert actions["execute-api:ManageConnections"] == [{"Fn::Sub": MANAGE_CONNECTIONS_ARN}]
    # The function may invoke itself (worker invocations) and no other function.
    assert actions["lambda:InvokeFunction"] == [{"Fn::Sub": SELF_ARN}]


def check_table(cfn: Template) -> None:
    table_id, table = only(cfn, "AWS::DynamoDB::Table")
    assert table_id == "Table"
    assert table["DeletionPolicy"] == "Retain"
    assert table["UpdateReplacePolicy"] == "Retain"
    tp = props(table)
    # The Rust tests build their DynamoDB Local table from these properties with a
    # plain YAML parser: no intrinsic functions allowed in them.
    assert not has_intrinsic(tp), "Table properties must be literal"
    assert tp["BillingMode"] == "PAY_PER_REQUEST"
    attrs = {a["AttributeName"]: a["AttributeType"] for a in tp["AttributeDefinitions"]}
    assert attrs == {
        "pk": "S",
        "sk": "S",
        "gsi1pk": "S",
        "gsi1sk": "S",
        "gsi2pk": "S",
        "gsi2sk": "S",
        "alive_shard": "S",
        "alive_due": "N",
    }
    assert len(tp["AttributeDefinitions"]) == len(attrs), "no duplicate attribute definitions"
    assert tp["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    gsis = {g["IndexName"]: g for g in tp["GlobalSecondaryIndexes"]}
    assert sorted(gsis) == ["alive", "by_owner", "by_thread"]
    assert len(gsis) == len(tp["GlobalSecondaryIndexes"])
    for name, (hash_key, range_key) in {
        "by_owner": ("gsi1pk", "gsi1sk"),
        "by_thread": ("gsi2pk", "gsi2sk"),
        "alive": ("alive_shard", "alive_due"),
    }.items():
        assert gsis[name]["KeySchema"] == [
            {"AttributeName": hash_key, "KeyType": "HASH"},
            {"AttributeName": range_key, "KeyType": "RANGE"},
        ], name
        assert gsis[name]["Projection"] == {"ProjectionType": "ALL"}, name
        assert "ProvisionedThroughput" not in gsis[name], name
    assert tp["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert tp["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert tp["SSESpecification"] == {"SSEEnabled": True}
    assert "TableName" not in tp, "a generated name lets a retained table coexist with a new stack"


def check_logging(cfn: Template) -> None:
    _, group = only(cfn, "AWS::Logs::LogGroup")
    assert props(group)["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    levels = cfn["Parameters"]["LogLevel"]["AllowedValues"]
    mapping = cfn["Mappings"]["LogLevels"]
    assert sorted(mapping) == sorted(levels), "every LogLevel value maps to a Lambda level"
    # Lambda's level is never stricter than INFO, or it would drop the level-less EMF lines.
    for level in levels:
        want = level.upper() if level in ("trace", "debug", "info") else "INFO"
        assert mapping[level] == {"Lambda": want}, level
    assert set(level.upper() for level in levels) <= {"TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"}


def check_parameters(cfn: Template) -> None:
    params = cfn["Parameters"]
    assert params["StageName"]["Default"] == "prod"
    for secret in ("JwtSecret", "JwtPublicKey", "LlmApiKey", "McpServers"):
        assert params[secret]["NoEcho"] is True, secret
        assert params[secret]["Default"] == "", f"{secret} must have no real default"
    for name in ("JwtIssuer", "JwtAudience"):
        assert params[name]["Default"] == ""
    # Empty by default, so each agent's own default applies (README, Configuration).
    assert params["RunTimeLimitMs"]["Type"] == "String"
    assert params["RunTimeLimitMs"]["Default"] == ""
    limit = re.compile(params["RunTimeLimitMs"]["AllowedPattern"])
    assert all(limit.match(v) for v in ("", "1000", "870000", "7200000"))
    assert not any(limit.match(v) for v in ("999", "10000000", "15s", "-1"))
    assert params["HeartbeatDeadlineMs"]["Type"] == "Number"
    assert int(params["HeartbeatDeadlineMs"]["Default"]) == 10000
    assert params["LogLevel"]["Default"] == "info"
    # Usage limits are off unless the deployer sets them (a start stays one write).
    for name in ("MaxActiveRunsPerUser", "DailyTokenBudgetPerUser", "DailyTokenBudgetPerTenant"):
        assert params[name]["Type"] == "Number" and int(params[name]["Default"]) == 0, name
    assert params["LogRetentionDays"]["Type"] == "Number"
    assert int(params["LogRetentionDays"]["Default"]) == 14
    assert [int(v) for v in params["LogRetentionDays"]["AllowedValues"]] == CLOUDWATCH_RETENTION_DAYS
    # The longest run one worker drives (MAX_ASYNC_RUN_TIME_LIMIT) fits its timeout; longer
    # runs are handed on before it.
    _, fn = only(cfn, "AWS::Lambda::Function")
    assert 870_000 < props(fn)["Timeout"] * 1000


def check_outputs(cfn: Template) -> None:
    outputs = cfn.get("Outputs", {})
    missing = {"WebSocketUrl", "ConnectionsUrl", "TableName", "FunctionName"} - set(outputs)
    assert not missing, f"missing outputs {sorted(missing)}"
    host = "${WebSocketApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/${StageName}"
    assert outputs["WebSocketUrl"]["Value"] == {"Fn::Sub": f"wss://{host}"}
    assert outputs["ConnectionsUrl"]["Value"] == {"Fn::Sub": f"https://{host}/@connections"}
    assert outputs["TableName"]["Value"] == {"Ref": "Table"}
    assert outputs["FunctionName"]["Value"] == {"Ref": function_logical_id(cfn)}


# ------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def sam() -> Template:
    return load_sam()


@pytest.fixture(scope="module")
def cfn(sam: Template) -> Template:
    return to_cloudformation(sam)


def _cfn_lint_command() -> list[str]:
    # The cfn-lint CLI of the very installation imported above (not whatever
    # `cfn-lint` happens to be first on PATH); it reads .cfnlintrc like the CLI.
    return [sys.executable, "-c", "import sys; from cfnlint.runner import main; sys.argv[0] = 'cfn-lint'; sys.exit(main())"]


def run_cfn_lint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_cfn_lint_command(), "--", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


# --------------------------------------------------------------------- cfn-lint
def test_cfn_lint_reports_nothing() -> None:
    """cfn-lint finds no error, warning or informational finding in template.yaml."""
    result = run_cfn_lint(TEMPLATE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "", result.stdout


def test_cfn_lint_clean_after_sam_transform(cfn: Template) -> None:
    """The CloudFormation that the SAM transform produces also lints clean."""
    matches = cfnlint.api.lint(json.dumps(cfn))
    assert matches == [], "\n".join(str(m) for m in matches)


def test_cfn_lint_catches_a_broken_template(tmp_path: Path) -> None:
    """The lint step is live: an unknown route property is reported."""
    broken = TEMPLATE.read_text(encoding="utf-8").replace(
        "      RouteKey: $connect\n", "      RouteKey: $connect\n      NotAProperty: 1\n", 1
    )
    assert broken != TEMPLATE.read_text(encoding="utf-8")
    path = tmp_path / "template.yaml"
    path.write_text(broken, encoding="utf-8")
    result = run_cfn_lint(path)
    assert result.returncode != 0
    assert "NotAProperty" in result.stdout


# ------------------------------------------------------------ transformed template
def test_transform_is_offline_and_complete(cfn: Template) -> None:
    """The SAM transform succeeds offline and leaves no Serverless resource behind."""
    types = {r["Type"] for r in cfn["Resources"].values()}
    assert not any(t.startswith("AWS::Serverless::") for t in types)
    assert "Transform" not in cfn


def test_function_runtime_build_and_logging(cfn: Template) -> None:
    """The function is provided.al2023/arm64 bootstrap, built by cargo-lambda, logging JSON."""
    check_function(cfn)


def test_function_environment(cfn: Template) -> None:
    """The function gets exactly the documented environment, without CONNECTIONS_ENDPOINT."""
    check_environment(cfn)


def test_api_is_websocket(cfn: Template) -> None:
    """The API is a WebSocket API selecting routes on the frame's type field."""
    check_api(cfn)


def test_routes_target_the_function_integration(cfn: Template) -> None:
    """$connect, $disconnect and $default all target the one proxy integration of the function."""
    check_routes(cfn)


def test_default_route_is_two_way(cfn: Template) -> None:
    """Only $default has a route response, so the function's reply reaches the client."""
    check_default_route_response(cfn)


def test_deployment_and_stage(cfn: Template) -> None:
    """The deployment follows every route and the throttled stage serves it."""
    check_deployment_and_stage(cfn)


def test_api_gateway_permission_scoped_to_this_api(cfn: Template) -> None:
    """API Gateway may invoke the function only from this WebSocket API."""
    check_api_permission(cfn)


def test_sweep_schedule(cfn: Template) -> None:
    """An EventBridge rule invokes the same function every minute for the sweep."""
    check_sweep_schedule(cfn)


def test_iam_least_privilege(cfn: Template) -> None:
    """The role allows exactly the four DynamoDB actions the store calls on the table, ManageConnections on this stage, and invoking this function only."""
    check_iam(cfn)


def test_table_schema(cfn: Template) -> None:
    """The table has the keys, GSIs, TTL, backups and encryption the store relies on."""
    check_table(cfn)


def test_logging(cfn: Template) -> None:
    """Logs go to a retained-for-N-days group, and every LogLevel maps to a Lambda level."""
    check_logging(cfn)


def test_parameters(cfn: Template) -> None:
    """Parameters have the documented defaults and secrets have none."""
    check_parameters(cfn)


def test_outputs(cfn: Template) -> None:
    """The stack outputs the wss:// URL, the @connections URL, the table and the function."""
    check_outputs(cfn)


# ---------------------------------------------------------------- negative tests
def _drop_resource(name: str) -> Callable[[Template], None]:
    def mutate(t: Template) -> None:
        del t["Resources"][name]
        for r in t["Resources"].values():
            dep = r.get("DependsOn")
            if isinstance(dep, list) and name in dep:
                dep.remove(name)

    return mutate


def _set(path: list[str], value: Any) -> Callable[[Template], None]:
    def mutate(t: Template) -> None:
        node = t
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return mutate


def _add_action(action: str) -> Callable[[Template], None]:
    def mutate(t: Template) -> None:
        t["Resources"]["Function"]["Properties"]["Policies"][0]["Statement"][0]["Action"].append(action)

    return mutate


def _drop_gsi(index: str) -> Callable[[Template], None]:
    def mutate(t: Template) -> None:
        gsis = t["Resources"]["Table"]["Properties"]["GlobalSecondaryIndexes"]
        gsis[:] = [g for g in gsis if g["IndexName"] != index]

    return mutate


FN = ["Resources", "Function", "Properties"]
TABLE = ["Resources", "Table", "Properties"]

BREAKAGES: dict[str, tuple[Callable[[Template], None], Callable[[Template], None]]] = {
    "no $disconnect route": (_drop_resource("DisconnectRoute"), check_routes),
    "$connect targets another integration": (
        _set(["Resources", "ConnectRoute", "Properties", "Target"], {"Fn::Sub": "integrations/${Other}"}),
        check_routes,
    ),
    "no $default route response": (_drop_resource("DefaultRouteResponse"), check_default_route_response),
    "one-way $default route": (
        _set(["Resources", "DefaultRoute", "Properties", "RouteResponseSelectionExpression"], None),
        check_default_route_response,
    ),
    "deployment before a route": (
        _set(["Resources", "Deployment", "DependsOn"], ["ConnectRoute", "DefaultRoute"]),
        check_deployment_and_stage,
    ),
    "x86_64": (_set([*FN, "Architectures"], ["x86_64"]), check_function),
    "env CONNECTIONS_ENDPOINT set": (
        _set([*FN, "Environment", "Variables", "CONNECTIONS_ENDPOINT"], "https://example.invalid/prod"),
        check_environment,
    ),
    "env TABLE_NAME missing": (
        lambda t: t["Resources"]["Function"]["Properties"]["Environment"]["Variables"].pop("TABLE_NAME"),
        check_environment,
    ),
    "extra dynamodb:Scan": (_add_action("dynamodb:Scan"), check_iam),
    "ManageConnections on every API": (
        _set(
            [*FN, "Policies", 0, "Statement", 1, "Resource"],  # type: ignore[list-item]
            [{"Fn::Sub": "arn:${AWS::Partition}:execute-api:*:*:*"}],
        ),
        check_iam,
    ),
    "permission for any API": (
        _set(
            ["Resources", "ApiInvokePermission", "Properties", "SourceArn"],
            {"Fn::Sub": "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:*"},
        ),
        check_api_permission,
    ),
    "sweep every 5 minutes": (
        _set([*FN, "Events", "Sweep", "Properties", "Schedule"], "rate(5 minutes)"),
        check_sweep_schedule,
    ),
    "no alive GSI": (_drop_gsi("alive"), check_table),
    "TTL on the wrong attribute": (
        _set([*TABLE, "TimeToLiveSpecification"], {"AttributeName": "ttl", "Enabled": True}),
        check_table,
    ),
    "no WebSocketUrl output": (lambda t: t["Outputs"].pop("WebSocketUrl"), check_outputs),
    "secret with a default": (_set(["Parameters", "JwtSecret", "Default"], "changeme"), check_parameters),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_checks_catch_breakage(sam: Template, breakage: str) -> None:
    """Each structural check fails on a template copy broken in the way it guards against."""
    mutate, check = BREAKAGES[breakage]
    broken = copy.deepcopy(sam)
    mutate(broken)
    # Drop keys set to None (a way to express "remove this property").
    for resource in broken["Resources"].values():
        p = resource.get("Properties", {})
        for key in [k for k, v in p.items() if v is None]:
            del p[key]
    with pytest.raises(AssertionError):
        check(to_cloudformation(broken))


# ------------------------------------------------------- Lambda Managed Instances
MANAGED = REPO / "template-managed-instances.yaml"


@pytest.fixture(scope="module")
def managed_cfn() -> Template:
    return to_cloudformation(yaml_parse(MANAGED.read_text(encoding="utf-8")))


def test_managed_instances_template_lints_clean(managed_cfn: Template) -> None:
    """cfn-lint finds nothing in template-managed-instances.yaml, before and after the transform."""
    result = run_cfn_lint(MANAGED)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "", result.stdout
    matches = cfnlint.api.lint(json.dumps(managed_cfn))
    assert matches == [], "\n".join(str(m) for m in matches)


def test_managed_instances_function_runs_on_the_capacity_provider(managed_cfn: Template) -> None:
    """The function gets the capacity provider and its per-environment concurrency from the
    parameters (Lambda sets AWS_LAMBDA_MAX_CONCURRENCY from it); the classic template has neither."""
    _, fn = only(managed_cfn, "AWS::Lambda::Function")
    config = props(fn)["CapacityProviderConfig"]["LambdaManagedInstancesCapacityProviderConfig"]
    assert config == {
        "CapacityProviderArn": {"Ref": "CapacityProviderArn"},
        "PerExecutionEnvironmentMaxConcurrency": {"Ref": "PerEnvironmentConcurrency"},
    }
    assert "AWS_LAMBDA_MAX_CONCURRENCY" not in props(fn)["Environment"]["Variables"]
    params = yaml_parse(MANAGED.read_text(encoding="utf-8"))["Parameters"]
    assert params["PerEnvironmentConcurrency"]["MaxValue"] == 1600
    assert "Default" not in params["CapacityProviderArn"]
    classic = load_sam()
    assert "CapacityProviderConfig" not in classic["Resources"]["Function"]["Properties"]
    assert "CapacityProviderArn" not in classic["Parameters"]
