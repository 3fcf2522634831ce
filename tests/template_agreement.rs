//! The code and `template.yaml` agree: environment variables, routes, the table's keys, indexes
//! and TTL, and the IAM policy's DynamoDB actions.
//!
//! Each check takes the parsed template and the code's side ([`Code`]) and returns its
//! mismatches, so the negative tests can prove that every check fails when either side changes.

use std::collections::BTreeSet;
use wsexec::store::dynamo;
use yaml_rust2::{Yaml, YamlLoader};

/// Variables the code reads that the template deliberately does not set, each with the reason.
const NOT_SET_BY_TEMPLATE: [(&str, &str); 5] = [
    (
        "CONNECTIONS_ENDPOINT",
        "derived from each event as https://{domainName}/{stage}; set only behind a custom domain or the local gateway",
    ),
    (
        "WSEXEC_MODE",
        "a deployment runs in the default mode, production; local and test are for the local tool and tests",
    ),
    (
        "DYNAMODB_WARMUP",
        "an opt-in init-time warm-up of the DynamoDB connection, off by default",
    ),
    (
        "ROUTE_TIME_LIMIT_MS",
        "API Gateway's own 29 s route limit (28 s kept) is the default and the most allowed; lowering it is for tests",
    ),
    (
        "TLS_NATIVE_ROOTS",
        "an escape hatch for TLS-intercepting networks; deployments trust the compiled-in AWS roots",
    ),
];

/// Variables Lambda itself sets (reserved: a template cannot set them).
const SET_BY_LAMBDA: [&str; 2] = ["AWS_LAMBDA_LOG_LEVEL", "AWS_LAMBDA_FUNCTION_NAME"];

fn template_text() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/template.yaml")).unwrap()
}

fn parse(text: &str) -> Yaml {
    YamlLoader::load_from_str(text)
        .expect("template parses")
        .remove(0)
}

/// The code's side of the contract.
#[derive(Clone, Debug)]
struct Code {
    env_read: Vec<&'static str>,
    routes: Vec<&'static str>,
    key_schema: [(&'static str, &'static str); 2],
    attributes: Vec<(&'static str, &'static str)>,
    indexes: Vec<(&'static str, &'static str, &'static str)>,
    ttl: &'static str,
    actions: Vec<String>,
}

impl Code {
    /// What the crate actually reads, serves and calls.
    fn actual() -> Code {
        Code {
            env_read: wsexec::config::ENV_VARS
                .iter()
                .chain(wsexec::telemetry::ENV_VARS.iter())
                .chain(wsexec::llm::ENV_VARS.iter())
                .copied()
                .collect(),
            routes: wsexec::routes::ROUTE_KEYS.to_vec(),
            key_schema: [(dynamo::PK, "HASH"), (dynamo::SK, "RANGE")],
            attributes: dynamo::KEY_ATTRIBUTES.to_vec(),
            indexes: dynamo::INDEXES.to_vec(),
            ttl: dynamo::TTL_ATTRIBUTE,
            actions: dynamo::ACTIONS
                .iter()
                .map(|a| format!("dynamodb:{a}"))
                .chain(
                    wsexec::dispatch::lambda::ACTIONS
                        .iter()
                        .map(|a| format!("lambda:{a}")),
                )
                .collect(),
        }
    }
}

/// The template's resources of type `kind`, with their logical ids.
fn resources<'y>(t: &'y Yaml, kind: &str) -> Vec<(&'y str, &'y Yaml)> {
    t["Resources"]
        .as_hash()
        .into_iter()
        .flatten()
        .filter(|(_, r)| r["Type"].as_str() == Some(kind))
        .map(|(id, r)| (id.as_str().unwrap_or("?"), r))
        .collect()
}

/// The one resource of type `kind`, or a mismatch.
fn only<'y>(t: &'y Yaml, kind: &str) -> Result<&'y Yaml, String> {
    match resources(t, kind).as_slice() {
        [(_, r)] => Ok(r),
        found => Err(format!("expected one {kind}, found {}", found.len())),
    }
}

fn strings(y: &Yaml) -> Vec<&str> {
    match y {
        Yaml::String(s) => vec![s.as_str()],
        Yaml::Array(a) => a.iter().filter_map(Yaml::as_str).collect(),
        _ => vec![],
    }
}

/// Mismatches of `expected` (the code) against `found` (the template), both ways.
fn diff<T: Ord + std::fmt::Debug>(
    what: &str,
    expected: BTreeSet<T>,
    found: BTreeSet<T>,
) -> Vec<String> {
    let mut out: Vec<String> = expected
        .difference(&found)
        .map(|x| format!("{what} {x:?}: in the code, not in the template"))
        .collect();
    out.extend(
        found
            .difference(&expected)
            .map(|x| format!("{what} {x:?}: in the template, not in the code")),
    );
    out
}

/// (a) Every variable the code reads is set by the function's environment, except the documented
/// ones; every variable set there is read by the code.
fn env_mismatches(t: &Yaml, code: &Code) -> Vec<String> {
    let function = match only(t, "AWS::Serverless::Function") {
        Ok(f) => f,
        Err(e) => return vec![e],
    };
    let set: BTreeSet<&str> = function["Properties"]["Environment"]["Variables"]
        .as_hash()
        .into_iter()
        .flatten()
        .filter_map(|(k, _)| k.as_str())
        .collect();
    let skipped: BTreeSet<&str> = NOT_SET_BY_TEMPLATE
        .iter()
        .map(|(v, _)| *v)
        .chain(SET_BY_LAMBDA)
        .collect();
    let mut out = Vec::new();
    for (var, why) in NOT_SET_BY_TEMPLATE {
        if set.contains(var) {
            out.push(format!(
                "{var} is set by the template but documented as not: {why}"
            ));
        }
    }
    for var in SET_BY_LAMBDA {
        if set.contains(var) {
            out.push(format!("{var} is reserved: Lambda sets it"));
        }
    }
    let expected: BTreeSet<&str> = code
        .env_read
        .iter()
        .copied()
        .filter(|v| !skipped.contains(v))
        .collect();
    let found = set.into_iter().filter(|v| !skipped.contains(v)).collect();
    out.extend(diff("environment variable", expected, found));
    out
}

/// (b) The template declares exactly the routes the code serves.
fn route_mismatches(t: &Yaml, code: &Code) -> Vec<String> {
    let mut out = Vec::new();
    let mut found = BTreeSet::new();
    for (id, route) in resources(t, "AWS::ApiGatewayV2::Route") {
        match route["Properties"]["RouteKey"].as_str() {
            Some(k) => {
                found.insert(k);
            }
            None => out.push(format!("route {id} has no RouteKey")),
        }
    }
    out.extend(diff("route", code.routes.iter().copied().collect(), found));
    out
}

/// (c) The table's key schema, attribute definitions, GSIs and TTL are the store's.
fn table_mismatches(t: &Yaml, code: &Code) -> Vec<String> {
    let table = match only(t, "AWS::DynamoDB::Table") {
        Ok(table) => &table["Properties"],
        Err(e) => return vec![e],
    };
    let key_schema = |y: &Yaml| -> Vec<(String, String)> {
        y.as_vec()
            .into_iter()
            .flatten()
            .map(|k| {
                let s = |f: &str| k[f].as_str().unwrap_or("?").to_owned();
                (s("AttributeName"), s("KeyType"))
            })
            .collect()
    };
    let mut out = Vec::new();
    let expected_keys: Vec<(String, String)> = code
        .key_schema
        .iter()
        .map(|(a, k)| (a.to_string(), k.to_string()))
        .collect();
    let keys = key_schema(&table["KeySchema"]);
    if keys != expected_keys {
        out.push(format!(
            "table key schema: code {expected_keys:?}, template {keys:?}"
        ));
    }
    let attributes = table["AttributeDefinitions"]
        .as_vec()
        .into_iter()
        .flatten()
        .map(|a| {
            let s = |f: &str| a[f].as_str().unwrap_or("?");
            (s("AttributeName"), s("AttributeType"))
        })
        .collect();
    out.extend(diff(
        "attribute definition",
        code.attributes.iter().copied().collect(),
        attributes,
    ));
    let mut indexes = BTreeSet::new();
    for g in table["GlobalSecondaryIndexes"]
        .as_vec()
        .into_iter()
        .flatten()
    {
        let name = g["IndexName"].as_str().unwrap_or("?");
        match key_schema(&g["KeySchema"]).as_slice() {
            [(hash, h), (range, r)] if h == "HASH" && r == "RANGE" => {
                indexes.insert((name.to_owned(), hash.clone(), range.clone()));
            }
            other => out.push(format!("index {name} key schema {other:?}")),
        }
    }
    let expected = code
        .indexes
        .iter()
        .map(|(n, h, r)| (n.to_string(), h.to_string(), r.to_string()))
        .collect();
    out.extend(diff("index", expected, indexes));
    let ttl = &table["TimeToLiveSpecification"];
    if ttl["AttributeName"].as_str() != Some(code.ttl) || ttl["Enabled"].as_bool() != Some(true) {
        out.push(format!(
            "TTL: code {:?} enabled, template {:?} enabled {:?}",
            code.ttl,
            ttl["AttributeName"].as_str(),
            ttl["Enabled"].as_bool()
        ));
    }
    out
}

/// (d) The function's policies grant exactly the DynamoDB actions the store calls and the Lambda
/// actions the dispatcher calls, the latter on the function itself only (its fixed name).
fn iam_mismatches(t: &Yaml, code: &Code) -> Vec<String> {
    let function = match only(t, "AWS::Serverless::Function") {
        Ok(f) => f,
        Err(e) => return vec![e],
    };
    let mut out = Vec::new();
    let mut granted = BTreeSet::new();
    for policy in function["Properties"]["Policies"]
        .as_vec()
        .into_iter()
        .flatten()
    {
        let statements = policy["Statement"].as_vec();
        if statements.is_none() {
            // A SAM policy template or managed policy: its actions cannot be checked here.
            let name = match policy {
                Yaml::Hash(h) => h
                    .keys()
                    .filter_map(Yaml::as_str)
                    .collect::<Vec<_>>()
                    .join(","),
                other => other.as_str().unwrap_or("?").to_owned(),
            };
            if name.to_ascii_lowercase().contains("dynamodb") {
                out.push(format!(
                    "policy {name} grants DynamoDB actions not written out"
                ));
            }
        }
        for st in statements.into_iter().flatten() {
            let actions = strings(&st["Action"]);
            let lambda = actions.iter().any(|a| a.starts_with("lambda:"));
            granted.extend(actions.into_iter().filter(|a| {
                let a = a.to_ascii_lowercase();
                a.starts_with("dynamodb:") || a.starts_with("lambda:")
            }));
            let own = format!(
                ":function:{}",
                function["Properties"]["FunctionName"]
                    .as_str()
                    .unwrap_or("?")
            );
            for r in strings(&st["Resource"]).into_iter().filter(|_| lambda) {
                if r.contains('*') || !r.ends_with(&own) {
                    out.push(format!("lambda action on {r:?}, not on this function only"));
                }
            }
        }
    }
    let expected = code.actions.iter().map(String::as_str).collect();
    out.extend(diff("IAM action", expected, granted));
    out
}

type Check = fn(&Yaml, &Code) -> Vec<String>;
type CodeChange = fn(&mut Code);

const CHECKS: [(&str, Check); 4] = [
    ("environment", env_mismatches),
    ("routes", route_mismatches),
    ("table", table_mismatches),
    ("iam", iam_mismatches),
];

/// `text` with `from` (which must occur) replaced once by `to`.
fn edit(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "template no longer contains {from:?}");
    text.replacen(from, to, 1)
}

/// `text` without the lines from `start` (which must occur) up to, not including, `end`.
fn cut(text: &str, start: &str, end: &str) -> String {
    let from = text.find(start).unwrap_or_else(|| panic!("no {start:?}"));
    let to = from
        + text[from..]
            .find(end)
            .unwrap_or_else(|| panic!("no {end:?}"));
    format!("{}{}", &text[..from], &text[to..])
}

/// The code and the template agree on every point.
#[test]
fn template_agrees_with_code() {
    let t = parse(&template_text());
    let code = Code::actual();
    let mismatches: Vec<String> = CHECKS
        .iter()
        .flat_map(|(name, check)| {
            check(&t, &code)
                .into_iter()
                .map(move |m| format!("{name}: {m}"))
        })
        .collect();
    assert!(mismatches.is_empty(), "{mismatches:#?}");
}

/// Each check fails on a template copy changed in the way it guards against.
#[test]
fn every_check_fails_when_the_template_changes() {
    let text = template_text();
    let cases: [(&str, String, Check); 14] = [
        (
            "invoke granted on every function",
            edit(&text, "function:${AWS::StackName}-wsexec\n", "function:*\n"),
            iam_mismatches,
        ),
        (
            "invoke not granted",
            edit(
                &text,
                "                - lambda:InvokeFunction\n",
                "                - lambda:GetFunction\n",
            ),
            iam_mismatches,
        ),
        (
            "route removed",
            cut(&text, "  DisconnectRoute:\n", "  DefaultRoute:\n"),
            route_mismatches,
        ),
        (
            "route renamed",
            edit(&text, "RouteKey: $disconnect", "RouteKey: chat"),
            route_mismatches,
        ),
        (
            "env var removed",
            edit(
                &text,
                "          RUN_TIME_LIMIT_MS: !Ref RunTimeLimitMs\n",
                "",
            ),
            env_mismatches,
        ),
        (
            "RUST_LOG removed",
            edit(&text, "          RUST_LOG: !Ref LogLevel\n", ""),
            env_mismatches,
        ),
        (
            "env var nobody reads",
            edit(
                &text,
                "          TABLE_NAME: !Ref Table\n",
                "          TABLE_NAME: !Ref Table\n          TABLE: x\n",
            ),
            env_mismatches,
        ),
        (
            "CONNECTIONS_ENDPOINT set",
            edit(
                &text,
                "          TABLE_NAME: !Ref Table\n",
                "          TABLE_NAME: !Ref Table\n          CONNECTIONS_ENDPOINT: https://example.invalid/prod\n",
            ),
            env_mismatches,
        ),
        (
            "index removed",
            cut(
                &text,
                "        - IndexName: by_thread\n",
                "        # SPARSE",
            ),
            table_mismatches,
        ),
        (
            "index key changed",
            edit(
                &text,
                "            - AttributeName: gsi2sk\n",
                "            - AttributeName: gsi1sk\n",
            ),
            table_mismatches,
        ),
        (
            "key attribute type changed",
            edit(
                &text,
                "        - AttributeName: alive_due\n          AttributeType: N",
                "        - AttributeName: alive_due\n          AttributeType: S",
            ),
            table_mismatches,
        ),
        (
            "TTL attribute renamed",
            edit(
                &text,
                "        AttributeName: expires_at\n",
                "        AttributeName: ttl\n",
            ),
            table_mismatches,
        ),
        (
            "action added",
            edit(
                &text,
                "                - dynamodb:Query\n",
                "                - dynamodb:Query\n                - dynamodb:Scan\n",
            ),
            iam_mismatches,
        ),
        (
            "action removed",
            edit(&text, "                - dynamodb:DeleteItem\n", ""),
            iam_mismatches,
        ),
    ];
    let code = Code::actual();
    for (name, broken, check) in cases {
        assert_ne!(broken, text, "{name}: the edit changed nothing");
        assert!(
            !check(&parse(&broken), &code).is_empty(),
            "{name}: not caught"
        );
    }
}

/// Each check fails against the real template when the code's side changes.
#[test]
fn every_check_fails_when_the_code_changes() {
    let t = parse(&template_text());
    let code = Code::actual();
    let changes: [(&str, CodeChange, Check); 6] = [
        (
            "reads a new variable",
            |c| c.env_read.push("NEW_SETTING"),
            env_mismatches,
        ),
        (
            "stops reading RUST_LOG",
            |c| c.env_read.retain(|v| *v != "RUST_LOG"),
            env_mismatches,
        ),
        (
            "serves a new route",
            |c| c.routes.push("chat"),
            route_mismatches,
        ),
        (
            "queries a new index",
            |c| c.indexes.push(("by_agent", "gsi3pk", "gsi3sk")),
            table_mismatches,
        ),
        (
            "renames the TTL attribute",
            |c| c.ttl = "ttl",
            table_mismatches,
        ),
        (
            "calls a new action",
            |c| c.actions.push("dynamodb:BatchWriteItem".into()),
            iam_mismatches,
        ),
    ];
    for (name, change, check) in changes {
        let mut changed = code.clone();
        change(&mut changed);
        assert!(!check(&t, &changed).is_empty(), "{name}: not caught");
    }
}

fn managed_text() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/template-managed-instances.yaml"
    ))
    .unwrap()
}

/// What `template-managed-instances.yaml` may add to or change in `template.yaml`: two
/// parameters, and the function's capacity provider and memory.
const MANAGED_PARAMETERS: [&str; 2] = ["CapacityProviderArn", "PerEnvironmentConcurrency"];
const MANAGED_FUNCTION_PROPERTIES: [&str; 2] = ["CapacityProviderConfig", "MemorySize"];

/// `y[key]` for editing (`None` when `y` is not a mapping or lacks `key`).
fn entry<'y>(y: &'y mut Yaml, key: &str) -> Option<&'y mut Yaml> {
    match y {
        Yaml::Hash(h) => h.get_mut(&Yaml::String(key.to_owned())),
        _ => None,
    }
}

fn remove(y: &mut Yaml, key: &str) {
    if let Yaml::Hash(h) = y {
        h.remove(&Yaml::String(key.to_owned()));
    }
}

/// The Managed Instances template differs from the classic one in nothing but its documented
/// additions, which are wired to each other; the mismatches otherwise.
fn managed_mismatches(classic: &str, managed: &str) -> Vec<String> {
    let (mut classic, mut managed) = (parse(classic), parse(managed));
    let mut out = Vec::new();
    let config = &managed["Resources"]["Function"]["Properties"]["CapacityProviderConfig"];
    if config["Arn"].as_str() != Some("CapacityProviderArn") {
        out.push(format!("CapacityProviderConfig.Arn: {:?}", config["Arn"]));
    }
    if config["PerExecutionEnvironmentMaxConcurrency"].as_str() != Some("PerEnvironmentConcurrency")
    {
        out.push("PerExecutionEnvironmentMaxConcurrency is not the parameter".into());
    }
    for p in MANAGED_PARAMETERS {
        if managed["Parameters"][p].is_badvalue() {
            out.push(format!("parameter {p} is missing"));
        }
        if let Some(params) = entry(&mut managed, "Parameters") {
            remove(params, p);
        }
    }
    for t in [&mut classic, &mut managed] {
        let props = entry(t, "Resources")
            .and_then(|r| entry(r, "Function"))
            .and_then(|f| entry(f, "Properties"));
        if let Some(props) = props {
            MANAGED_FUNCTION_PROPERTIES
                .iter()
                .for_each(|k| remove(props, k));
        }
    }
    if classic != managed {
        out.push("template-managed-instances.yaml differs from template.yaml beyond its capacity provider: carry the change over".into());
    }
    out
}

/// `template-managed-instances.yaml` is `template.yaml` plus the capacity provider and the
/// per-environment concurrency, nothing else.
#[test]
fn managed_instances_template_is_the_classic_one_plus_its_capacity_provider() {
    let m = managed_mismatches(&template_text(), &managed_text());
    assert!(m.is_empty(), "{m:#?}");
}

/// The comparison catches a change made to one template only, and a capacity provider that is
/// not wired to its parameter.
#[test]
fn managed_instances_agreement_fails_when_either_template_drifts() {
    let (classic, managed) = (template_text(), managed_text());
    let drifted = [
        (
            edit(&classic, "RUN_DISPATCH: async", "RUN_DISPATCH: inline"),
            managed.clone(),
        ),
        (
            classic.clone(),
            edit(&managed, "Timeout: 900", "Timeout: 600"),
        ),
        (
            classic.clone(),
            edit(
                &managed,
                "Arn: !Ref CapacityProviderArn",
                "Arn: arn:aws:lambda:us-east-1:123456789012:capacity-provider:x",
            ),
        ),
        (
            classic.clone(),
            edit(
                &managed,
                "  PerEnvironmentConcurrency:\n",
                "  Concurrency:\n",
            ),
        ),
    ];
    for (i, (c, m)) in drifted.iter().enumerate() {
        assert!(!managed_mismatches(c, m).is_empty(), "drift {i} not caught");
    }
}
