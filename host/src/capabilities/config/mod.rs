//! `flowhost:plugin/config`: a plugin's own settings, `[plugins.<name>.config]`.

mod host;

use std::collections::BTreeMap;
use std::sync::Arc;

/// Per-call state of the config capability: the calling plugin's settings only.
pub struct ConfigCtx {
    values: Arc<BTreeMap<String, String>>,
    /// The settings read and what they held, when the call is recorded.
    reads: Option<BTreeMap<String, Option<String>>>,
}

impl ConfigCtx {
    /// State for one call of a plugin configured with `values`.
    pub fn new(values: Arc<BTreeMap<String, String>>) -> Self {
        Self {
            values,
            reads: None,
        }
    }

    /// Readies it for the next call of a plugin configured with `values`: its reads
    /// recorded if `record`; in a replay, the recorded settings over `values` (a setting
    /// recorded as unset is unset).
    pub fn next_call(
        &mut self,
        values: &Arc<BTreeMap<String, String>>,
        record: bool,
        replay: Option<&BTreeMap<String, Option<String>>>,
    ) {
        self.values = match replay {
            Some(read) => {
                let mut replayed = (**values).clone();
                for (key, value) in read {
                    match value {
                        Some(value) => replayed.insert(key.clone(), value.clone()),
                        None => replayed.remove(key),
                    };
                }
                Arc::new(replayed)
            }
            None => values.clone(),
        };
        self.reads = (record || replay.is_some()).then(BTreeMap::new);
    }

    /// The settings read so far and what they held, when recording.
    pub fn take_reads(&mut self) -> BTreeMap<String, Option<String>> {
        self.reads.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// The value of `key`.
    pub fn get(&mut self, key: &str) -> Option<String> {
        let value = self.values.get(key).cloned();
        if let Some(reads) = &mut self.reads {
            reads.insert(key.to_owned(), value.clone());
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_only_its_own_values() {
        let values = BTreeMap::from([("region".to_owned(), "eu".to_owned())]);
        let mut ctx = ConfigCtx::new(Arc::new(values));
        assert_eq!(ctx.get("region").as_deref(), Some("eu"));
        assert_eq!(ctx.get("other"), None);
    }
}
