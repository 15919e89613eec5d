//! `flowhost events publish` and `flowhost dead-letters list | redeliver`.

use clap::Subcommand;

use super::client::{Auth, Client, encode};
use super::runs::{pretty, read_json};
use super::table::{Table, cut};

/// `flowhost events ...`.
#[derive(Subcommand, Debug)]
pub enum EventsCommand {
    /// Publish an event on TOPIC, durably, for the host's subscriptions and waiting runs.
    Publish {
        /// The topic, e.g. `order.placed`.
        topic: String,
        /// The event's data: JSON text, `@FILE`, or `-` for standard input. Default `{}`.
        #[arg(long)]
        data: Option<String>,
    },
    /// Every subscription with how many events wait in its queue.
    Subscriptions {
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `flowhost dead-letters ...`.
#[derive(Subcommand, Debug)]
pub enum DeadLettersCommand {
    /// Deliveries given up on, newest first.
    List {
        /// Dead letters per page (1 to 500).
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Where the previous page ended.
        #[arg(long)]
        cursor: Option<String>,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Queue a dead letter's event for its subscription again, with fresh attempts.
    Redeliver {
        /// The dead letter.
        id: String,
    },
}

/// Runs one events command; the report is what to print.
pub async fn run_events(client: &Client, command: &EventsCommand) -> anyhow::Result<String> {
    match command {
        EventsCommand::Publish { topic, data } => {
            let data = match data {
                Some(source) => read_json(source)?,
                None => serde_json::json!({}),
            };
            let path = format!("/v1/events/{}", encode(topic));
            let accepted = client.post(&path, Auth::Trigger, Some(&data)).await?;
            Ok(format!(
                "published {} on {topic}\n",
                accepted["id"].as_str().unwrap_or("?")
            ))
        }
        EventsCommand::Subscriptions { json } => {
            let answer = client.get("/v1/subscriptions", Auth::Open).await?;
            if *json {
                return Ok(pretty(&answer));
            }
            let mut table = Table::new(&["SUBSCRIPTION", "TOPIC", "TARGET", "BACKLOG"]);
            for subscription in answer["subscriptions"].as_array().into_iter().flatten() {
                let target = match subscription["target"].as_str() {
                    Some(target) => {
                        format!("{} {target}", subscription["kind"].as_str().unwrap_or(""))
                    }
                    None => subscription["kind"].as_str().unwrap_or("").to_owned(),
                };
                let backlog = match subscription["backlog"].as_u64() {
                    Some(backlog) => backlog.to_string(),
                    None => format!(
                        "? ({})",
                        cut(subscription["backlog_error"].as_str().unwrap_or(""), 40)
                    ),
                };
                table.row(vec![
                    subscription["name"].as_str().unwrap_or("").to_owned(),
                    subscription["topic"].as_str().unwrap_or("").to_owned(),
                    target,
                    backlog,
                ]);
            }
            Ok(table.to_string())
        }
    }
}

/// Runs one dead-letters command; the report is what to print.
pub async fn run_dead_letters(
    client: &Client,
    command: &DeadLettersCommand,
) -> anyhow::Result<String> {
    match command {
        DeadLettersCommand::List {
            limit,
            cursor,
            json,
        } => {
            let mut path = format!("/v1/dead-letters?limit={limit}");
            if let Some(cursor) = cursor {
                path.push_str(&format!("&cursor={}", encode(cursor)));
            }
            let page = client.get(&path, Auth::Open).await?;
            if *json {
                return Ok(pretty(&page));
            }
            let mut table = Table::new(&[
                "ID",
                "SUBSCRIPTION",
                "TOPIC",
                "ATTEMPTS",
                "DEAD AT",
                "ERROR",
            ]);
            for letter in page["dead_letters"].as_array().into_iter().flatten() {
                table.row(vec![
                    letter["id"].as_str().unwrap_or("").to_owned(),
                    letter["subscription"].as_str().unwrap_or("").to_owned(),
                    letter["event"]["type"].as_str().unwrap_or("").to_owned(),
                    letter["attempts"].to_string(),
                    letter["dead_at"].as_str().unwrap_or("").to_owned(),
                    cut(letter["error"].as_str().unwrap_or(""), 60),
                ]);
            }
            Ok(super::table::page(
                &table,
                "no dead letters",
                page["next_cursor"].as_str(),
            ))
        }
        DeadLettersCommand::Redeliver { id } => {
            let path = format!("/v1/dead-letters/{}/redeliver", encode(id));
            let letter = client.post(&path, Auth::Trigger, None).await?;
            Ok(format!(
                "dead letter {id}: {} queued again for {}\n",
                letter["event"]["id"].as_str().unwrap_or("?"),
                letter["subscription"].as_str().unwrap_or("?")
            ))
        }
    }
}
