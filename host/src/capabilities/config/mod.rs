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

    /// Keeps each setting read, with what it held, for [`Self::take_reads`].
    pub fn recording(mut self) -> Self {
        self.reads = Some(BTreeMap::new());
        self
    }

    /// Answers with the settings `read` recorded, over the plugin's own (a setting recorded
    /// as unset is unset), recording the reads made: a replay.
    pub fn replaying(mut self, read: &BTreeMap<String, Option<String>>) -> Self {
        let mut replayed = (*self.values).clone();
        for (key, value) in read {
            match value {
                Some(value) => replayed.insert(key.clone(), value.clone()),
                None => replayed.remove(key),
            };
        }
        self.values = Arc::new(replayed);
        self.recording()
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
