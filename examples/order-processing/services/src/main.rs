//! The `order-services` binary: parses the flags, sets up logging, binds, and serves
//! [`order_services::run`] until ctrl-c or SIGTERM.

use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use tokio::net::TcpListener;

/// Mock users, inventory, payments and orders services for the order-processing example.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// The address to listen on (port 0 picks a free port; the log line says which).
    #[arg(long, env = "ORDER_SERVICES_LISTEN", default_value = "127.0.0.1:9100")]
    listen: SocketAddr,
    /// Announce each captured payment as settled to this URL, as a payment provider's
    /// webhook would (e.g. `http://127.0.0.1:8080/v1/events/payment.settled`).
    #[arg(long, env = "ORDER_SERVICES_SETTLE_TO")]
    settle_to: Option<String>,
    /// How long after a capture its settlement is announced, ms.
    #[arg(long, default_value_t = 200)]
    settle_after_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let listener = TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("binding {}", cli.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    tracing::info!(%addr, "order-services listening");
    let settlement = cli
        .settle_to
        .map(|webhook| order_services::state::Settlement {
            webhook,
            after_ms: cli.settle_after_ms,
        });
    order_services::serve(listener, settlement, shutdown_signal())
        .await
        .context("serving")?;
    tracing::info!("order-services stopped");
    Ok(())
}

/// Completes on ctrl-c or, on Unix, SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(cause = %error, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(cause = %error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
