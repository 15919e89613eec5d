//! `flowhost:plugin/config`: a plugin's own settings, `[plugins.<name>.config]`.

mod host;

use std::collections::BTreeMap;
use std::sync::Arc;

/// Per-call state of the config capability: the calling plugin's settings only.
pub struct ConfigCtx {
    values: Arc<BTreeMap<String, String>>,
}

impl ConfigCtx {
    /// State for one call of a plugin configured with `values`.
    pub fn new(values: Arc<BTreeMap<String, String>>) -> Self {
        Self { values }
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_only_its_own_values() {
        let values = BTreeMap::from([("region".to_owned(), "eu".to_owned())]);
        let ctx = ConfigCtx::new(Arc::new(values));
        assert_eq!(ctx.get("region"), Some("eu"));
        assert_eq!(ctx.get("other"), None);
    }
}
