//! Instances from DNS SRV records (RFC 2782), resolved again when their TTL runs out.
//!
//! Each record names a target host, a port, a priority and a weight. The instances are
//! `<scheme>://<target>:<port>`, lowest priority first (a call goes to a higher priority
//! only while every lower one cools down) and, within a priority, heaviest first. The
//! target's own name is resolved by the HTTP client when it connects, as any URL's host
//! is, so that `https` instances are checked against their names.
//!
//! The records are asked for again when the shortest TTL of the answer runs out, within
//! [`MIN_REFRESH`] and [`MAX_REFRESH`]: a TTL of 0 would otherwise mean a query per call's
//! worth of time, and a TTL of a day a host that never notices a move. The resolver is
//! hickory's stub resolver, of the system's configuration or asking the one server named.
//! Its own cache is cleared before each query: the watcher holds the answer itself, and a
//! read at once after a refused connection must reach the server.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{Name, RData};
use tokio::time::Instant;

use super::{Endpoint, ReadError, base_url};

/// The shortest time an answer is used before the records are asked for again.
pub(super) const MIN_REFRESH: Duration = Duration::from_secs(1);

/// The longest time an answer is used before the records are asked for again.
pub(super) const MAX_REFRESH: Duration = Duration::from_secs(300);

/// How long an answer of no records is believed before asking again.
const EMPTY_REFRESH: Duration = Duration::from_secs(5);

/// One SRV name and the resolver that asks for it.
pub(super) struct DnsSrv {
    resolver: TokioResolver,
    /// The SRV name, fully qualified, so that no search domain is tried.
    name: Name,
    scheme: String,
    /// When the last answer's TTL runs out; none before the first.
    refresh_at: Option<Instant>,
}

impl DnsSrv {
    /// Asks for the SRV records of `name` through `nameserver`, or the system's resolver.
    pub fn new(name: &str, nameserver: Option<SocketAddr>, scheme: &str) -> Result<Self, String> {
        let fqdn = if name.ends_with('.') {
            name.to_owned()
        } else {
            format!("{name}.")
        };
        let name = Name::from_ascii(&fqdn).map_err(|e| format!("`{name}`: {e}"))?;
        let builder = match nameserver {
            Some(server) => {
                let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
                    .into_iter()
                    .map(|mut connection| {
                        connection.port = server.port();
                        connection
                    })
                    .collect();
                let config = ResolverConfig::from_name_servers(vec![NameServerConfig::new(
                    server.ip(),
                    true,
                    connections,
                )]);
                TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
            }
            None => TokioResolver::builder_tokio()
                .map_err(|e| format!("reading the system's resolver configuration: {e}"))?,
        };
        let resolver = builder
            .build()
            .map_err(|e| format!("building the resolver: {e}"))?;
        Ok(Self {
            resolver,
            name,
            scheme: scheme.to_owned(),
            refresh_at: None,
        })
    }

    /// The instances the records name: at once when `at_once` or before the first answer,
    /// else once the last answer's TTL ran out.
    pub async fn read(&mut self, at_once: bool) -> Result<Vec<Endpoint>, ReadError> {
        if !at_once && let Some(at) = self.refresh_at {
            tokio::time::sleep_until(at).await;
        }
        self.resolver.clear_cache();
        match self.resolver.srv_lookup(self.name.clone()).await {
            Ok(lookup) => {
                let ttl = lookup
                    .valid_until()
                    .saturating_duration_since(std::time::Instant::now())
                    .clamp(MIN_REFRESH, MAX_REFRESH);
                self.refresh_at = Some(Instant::now() + ttl);
                let records = lookup
                    .answers()
                    .iter()
                    .filter_map(|record| match &record.data {
                        RData::SRV(srv) => Some(srv.clone()),
                        _ => None,
                    });
                Ok(endpoints(&self.scheme, records))
            }
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => {
                self.refresh_at = Some(Instant::now() + EMPTY_REFRESH);
                Ok(Vec::new())
            }
            Err(e) => Err(ReadError::Unreachable(format!("{}: {e}", self.name))),
        }
    }
}

/// The instances `records` name, lowest priority first, then heaviest first. A target of
/// `.` says the service is not available there (RFC 2782), so it names none.
fn endpoints(
    scheme: &str,
    records: impl Iterator<Item = hickory_resolver::proto::rr::rdata::SRV>,
) -> Vec<Endpoint> {
    let mut records: Vec<_> = records.filter(|srv| !srv.target.is_root()).collect();
    records.sort_by(|a, b| {
        a.priority
            .cmp(&b.priority)
            .then(b.weight.cmp(&a.weight))
            .then_with(|| a.target.cmp(&b.target))
            .then(a.port.cmp(&b.port))
    });
    records
        .into_iter()
        .map(|srv| Endpoint {
            base: base_url(scheme, &srv.target.to_ascii(), srv.port),
            priority: srv.priority,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use hickory_resolver::proto::rr::rdata::SRV;

    use super::*;

    #[test]
    fn records_are_ordered_by_priority_then_weight() {
        let srv = |priority, weight, port, target: &str| {
            SRV::new(priority, weight, port, Name::from_ascii(target).unwrap())
        };
        let records = [
            srv(20, 0, 9003, "backup.example.internal."),
            srv(10, 5, 9002, "light.example.internal."),
            srv(10, 60, 9001, "heavy.example.internal."),
            srv(0, 0, 0, "."),
        ];
        let found = endpoints("https", records.into_iter());
        let found: Vec<(&str, u16)> = found
            .iter()
            .map(|e| (e.base.as_str(), e.priority))
            .collect();
        assert_eq!(
            found,
            [
                ("https://heavy.example.internal:9001", 10),
                ("https://light.example.internal:9002", 10),
                ("https://backup.example.internal:9003", 20),
            ]
        );
    }
}
