//! The registry's keyspaces: plugin components, versions and heads; workflow versions,
//! heads and schedule marks.

use super::on_every_backend;
use crate::model::{
    Grants, Head, PluginVersion, SignedBy, VersionSource, WorkflowDefinition, WorkflowVersion,
};

fn plugin_version(name: &str, digest: &str, registered_ms: u64) -> PluginVersion {
    PluginVersion {
        name: name.into(),
        digest: digest.into(),
        label: None,
        worlds: vec!["step-plugin".into()],
        size: 3,
        registered_ms,
        source: VersionSource::Api,
        grants: Grants::default(),
        // Kept with the version, as every field is.
        signed_by: Some(SignedBy {
            key: "ed25519:key".into(),
            name: Some("release".into()),
        }),
    }
}

fn workflow_version(name: &str, steps: &str, registered_ms: u64) -> WorkflowVersion {
    let definition: WorkflowDefinition =
        serde_json::from_str(&format!(r#"{{"steps":{steps}}}"#)).unwrap();
    WorkflowVersion {
        name: name.into(),
        digest: definition.digest(),
        definition,
        registered_ms,
        source: VersionSource::Config,
    }
}

on_every_backend! {
    async fn a_component_shared_by_two_names_lives_until_its_last_version_goes(t: TestStore) {
        let store = &t.store;
        store.put_component("d1", b"abc").await.unwrap();
        store.put_component("d1", b"abc").await.unwrap();
        store.put_version(&plugin_version("a", "d1", 2)).await.unwrap();
        store.put_version(&plugin_version("b", "d1", 1)).await.unwrap();
        store.put_version(&plugin_version("a", "d0", 1)).await.unwrap();
        let digests: Vec<_> = store
            .versions("a")
            .await
            .unwrap()
            .into_iter()
            .map(|v| v.digest)
            .collect();
        assert_eq!(digests, ["d0", "d1"], "oldest registration first");
        assert_eq!(
            store.version("a", "d1").await.unwrap(),
            Some(plugin_version("a", "d1", 2))
        );
        assert!(!store.remove_version("a", "d1").await.unwrap());
        assert_eq!(
            store.component("d1").await.unwrap().as_deref(),
            Some(&b"abc"[..])
        );
        assert!(store.remove_version("b", "d1").await.unwrap());
        assert_eq!(store.component("d1").await.unwrap(), None);
        assert!(store.version("b", "d1").await.unwrap().is_none());
        assert!(store.versions("nobody").await.unwrap().is_empty());
    }

    async fn heads_survive_reopening(t: TestStore) {
        let mut head = Head::default();
        head.make_current("d1");
        head.make_current("d2");
        head.make_current("d1");
        t.store.put_head("a", &head).await.unwrap();
        t.store.put_workflow_head("w", &head).await.unwrap();
        t.store.put_schedule_mark("w", 1_700_000_000_123).await.unwrap();
        t.store.flush().await.unwrap();
        let t = t.reopen().await;
        let read = t.store.head("a").await.unwrap().unwrap();
        assert_eq!(read.history, ["d2", "d1"]);
        assert_eq!(read.current(), Some("d1"));
        assert!(t.store.head("b").await.unwrap().is_none());
        assert_eq!(t.store.workflow_heads().await.unwrap(), [("w".to_owned(), head)]);
        assert_eq!(t.store.schedule_mark("w").await.unwrap(), Some(1_700_000_000_123));
        assert_eq!(t.store.schedule_mark("v").await.unwrap(), None);
    }

    async fn workflow_versions_keep_their_first_registration_and_heads_list_by_name(t: TestStore) {
        let store = &t.store;
        let one = workflow_version("w", r#"[{"name":"a","plugin":"p"}]"#, 1);
        let two = workflow_version("w", r#"[{"name":"b","plugin":"p"}]"#, 2);
        store.put_workflow_version(&two).await.unwrap();
        store.put_workflow_version(&one).await.unwrap();
        let again = WorkflowVersion {
            registered_ms: 9,
            ..one.clone()
        };
        store.put_workflow_version(&again).await.unwrap();
        assert_eq!(
            store.workflow_versions("w").await.unwrap(),
            [one.clone(), two.clone()]
        );
        let read = store.workflow_version("w", &one.digest).await.unwrap().unwrap();
        assert_eq!(read.registered_ms, 1);
        assert_eq!(read.definition.digest(), one.digest, "the definition reads back as it was");
        assert!(store.workflow_versions("other").await.unwrap().is_empty());
        // By name as bytes: upper case before lower, as the embedded store's keys sort.
        let mut head = Head::default();
        head.make_current(&one.digest);
        for name in ["w", "W", "a-b", "a"] {
            store.put_workflow_head(name, &head).await.unwrap();
        }
        let names: Vec<String> = store
            .workflow_heads()
            .await
            .unwrap()
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert_eq!(names, ["W", "a", "a-b", "w"]);
        store.remove_workflow_version("w", &two.digest).await.unwrap();
        assert_eq!(store.workflow_versions("w").await.unwrap(), [one]);
    }

    async fn a_schedule_mark_moves_forward_as_written(t: TestStore) {
        let store = &t.store;
        assert_eq!(store.schedule_mark("tick").await.unwrap(), None);
        store.put_schedule_mark("tick", 1_000).await.unwrap();
        store.put_schedule_mark("tick", 2_000).await.unwrap();
        assert_eq!(store.schedule_mark("tick").await.unwrap(), Some(2_000));
    }
}
