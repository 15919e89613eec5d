//! `flowhost nodes list`.

use clap::Subcommand;

use super::client::{Auth, Client};
use super::runs::pretty;
use super::table::Table;

/// `flowhost nodes ...`.
#[derive(Subcommand, Debug)]
pub enum NodesCommand {
    /// The nodes sharing the host's store: address, version, lease, runs owned.
    List {
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs one nodes command; the report is what to print.
pub async fn run(client: &Client, command: &NodesCommand) -> anyhow::Result<String> {
    match command {
        NodesCommand::List { json } => {
            let answer = client.get("/v1/nodes", Auth::Open).await?;
            if *json {
                return Ok(pretty(&answer));
            }
            let this = answer["this"].as_str().unwrap_or("");
            let mut table = Table::new(&[
                "NODE",
                "ADDRESS",
                "VERSION",
                "LEASE",
                "RUNS",
                "LAST HEARTBEAT",
            ]);
            for node in answer["nodes"].as_array().into_iter().flatten() {
                let id = node["id"].as_str().unwrap_or("");
                let lease = if node["live"].as_bool() == Some(true) {
                    "live"
                } else {
                    "expired"
                };
                table.row(vec![
                    if id == this {
                        format!("{id} (this)")
                    } else {
                        id.to_owned()
                    },
                    node["address"].as_str().unwrap_or("").to_owned(),
                    node["version"].as_str().unwrap_or("").to_owned(),
                    lease.to_owned(),
                    node["runs"].as_u64().unwrap_or(0).to_string(),
                    node["heartbeat_at"].as_str().unwrap_or("").to_owned(),
                ]);
            }
            Ok(table.to_string())
        }
    }
}
