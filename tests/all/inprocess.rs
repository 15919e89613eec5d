//! A host served in this process by `flowhost::serve`, over a real sled store wrapped in a
//! `FaultyStore`, so that a test can fail or panic a chosen write or flush of a real host
//! and then restart it on the same store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use flowhost::model::SystemClock;
use flowhost::store::Store;
use flowhost::store::faults::{Faults, FaultyStore};
use flowhost::store::sled::SledStore;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::server::Api;
use crate::support::{SHARED_DATA_DIR, with_plugins};

/// The host, its fault plan, and the store's directory, which outlives restarts.
pub struct InProcess {
    api: Api,
    /// The plan of the store the host runs on now; a restart starts with an empty one.
    pub faults: Arc<Faults>,
    config: String,
    dir: tempfile::TempDir,
    listen: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl std::ops::Deref for InProcess {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

impl InProcess {
    /// Serves `config` (a TOML snippet with `{PLUGIN}` placeholders) on a fresh store.
    pub async fn start(config: &str) -> InProcess {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let listen = listener.local_addr().unwrap();
        let mut host = InProcess {
            api: Api::new(format!("http://{listen}")),
            faults: Arc::new(Faults::default()),
            config: format!("data-dir = {SHARED_DATA_DIR:?}\n{}", with_plugins(config)),
            dir: tempfile::tempdir().unwrap(),
            listen,
            stop: None,
            task: None,
        };
        host.serve(listener).await;
        host
    }

    async fn serve(&mut self, listener: tokio::net::TcpListener) {
        let config = flowhost::Config::from_toml(&self.config).unwrap();
        let sled = open(&self.dir.path().join("runs")).await;
        let store: Arc<dyn Store> = Arc::new(FaultyStore::new(Arc::new(sled), self.faults.clone()));
        let (stop, stopped) = oneshot::channel::<()>();
        self.stop = Some(stop);
        self.task = Some(tokio::spawn(flowhost::serve(
            listener,
            config,
            store,
            Arc::new(SystemClock),
            async {
                let _ = stopped.await;
            },
        )));
        let deadline = Instant::now() + Duration::from_secs(60);
        while self
            .client
            .get(format!("{}/healthz", self.url))
            .send()
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "the host did not come up");
            assert!(
                !self.task.as_ref().unwrap().is_finished(),
                "the host stopped"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the host (as SIGTERM does) and waits until its store is closed.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }

    /// Stops the host and serves the same configuration again on the same store, with an
    /// empty fault plan: what a restart after the fault finds.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.faults = Arc::new(Faults::default());
        let listener = tokio::net::TcpListener::bind(self.listen).await.unwrap();
        self.serve(listener).await;
    }
}

/// Opens the store in `dir`, waiting for a host that stopped to let go of it.
async fn open(dir: &std::path::Path) -> SledStore {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match SledStore::open(dir) {
            Ok(store) => return store,
            Err(e) => assert!(Instant::now() < deadline, "the store stays locked: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
