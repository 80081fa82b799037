//! `shoal drain NODE`, `shoal undrain NODE` and `shoal remove NODE`: take a node out of
//! service for maintenance and bring it back, or take it out of the cluster, from any node.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde_json::Value;

use crate::cli::http::{fail, Client, JsonBody, NodeUrls};

/// `shoal drain` and `shoal undrain` flags.
#[derive(Debug, Args)]
pub struct ServiceArgs {
    #[command(flatten)]
    nodes: NodeUrls,
    /// The node: its id as `shoal status` shows it, or enough of its start to name one.
    node: String,
    /// Wait until it is drained (drain) or has left the cluster (remove).
    #[arg(long)]
    wait: bool,
}

/// `POST /api/v1/nodes/NODE/{verb}`; the answer.
fn post(
    client: &mut Client,
    node: &str,
    verb: &str,
) -> Result<Value, crate::cli::http::ClientError> {
    let path = format!("/api/v1/nodes/{node}/{verb}");
    client.send(
        Duration::from_secs(15),
        |c, b| c.post(format!("{b}{path}")),
        JsonBody,
    )
}

fn say(v: &Value) {
    println!(
        "node {}: {} ({} attempts running there)",
        v["node"].as_str().unwrap_or("?"),
        v["state"].as_str().unwrap_or("?"),
        v["running"].as_u64().unwrap_or(0)
    );
}

/// Run `shoal drain`.
pub fn drain(args: ServiceArgs) -> ExitCode {
    let mut client = match Client::new(&args.nodes) {
        Ok(c) => c,
        Err(e) => return fail("drain", &e),
    };
    let v = match post(&mut client, &args.node, "drain") {
        Ok(v) => v,
        Err(e) => return fail("drain", &e),
    };
    say(&v);
    if !args.wait || v["state"] == "drained" {
        return ExitCode::SUCCESS;
    }
    let id = v["node"].as_str().unwrap_or_default().to_owned();
    watch(&mut client, "drain", &id, |n| {
        match n.and_then(|n| n["drain"].as_str()) {
            Some("drained") => {
                println!("node {id}: drained");
                Some(ExitCode::SUCCESS)
            }
            Some(_) => None,
            None => {
                eprintln!("shoal drain: node {id} is no longer draining (undrained, or gone)");
                Some(ExitCode::FAILURE)
            }
        }
    })
}

/// Look at node `id` in the cluster view every half second until `done` says how the
/// command ends (`None`: not yet); its argument is the node's entry, `None` once it is not
/// a member.
fn watch(
    client: &mut Client,
    command: &str,
    id: &str,
    mut done: impl FnMut(Option<&Value>) -> Option<ExitCode>,
) -> ExitCode {
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let view = match client.get_json("/api/v1/cluster", Duration::from_secs(10)) {
            Ok(v) => v,
            Err(e) => return fail(command, &e),
        };
        let node = view["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|n| n["id"] == id);
        if let Some(code) = done(node) {
            return code;
        }
    }
}

/// Run `shoal undrain`.
pub fn undrain(args: ServiceArgs) -> ExitCode {
    let mut client = match Client::new(&args.nodes) {
        Ok(c) => c,
        Err(e) => return fail("undrain", &e),
    };
    match post(&mut client, &args.node, "undrain") {
        Ok(v) => {
            say(&v);
            ExitCode::SUCCESS
        }
        Err(e) => fail("undrain", &e),
    }
}

/// Run `shoal remove`.
pub fn remove(args: ServiceArgs) -> ExitCode {
    let mut client = match Client::new(&args.nodes) {
        Ok(c) => c,
        Err(e) => return fail("remove", &e),
    };
    let v = match post(&mut client, &args.node, "remove") {
        Ok(v) => v,
        Err(e) => return fail("remove", &e),
    };
    let id = v["node"].as_str().unwrap_or_default().to_owned();
    println!("node {id}: removing: it takes no new task and leaves once nothing there is needed");
    if !args.wait {
        return ExitCode::SUCCESS;
    }
    watch(&mut client, "remove", &id, |n| {
        n.is_none().then(|| {
            println!("node {id}: left the cluster");
            ExitCode::SUCCESS
        })
    })
}
