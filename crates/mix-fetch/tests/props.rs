//! Property tests of the extractor: whatever the entry names, nothing lands outside the
//! destination.

mod common;

use std::fs;

use common::*;
use mix_fetch::{extract_tgz, Error};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_entries_never_escape(items in items()) {
        let sb = Sandbox::new();
        let archive = sb.write_archive(&tgz(&items));
        let before = sb.outside_box();
        let result = extract_tgz(&archive, &sb.dest());

        // Nothing outside the destination changed, whatever happened.
        prop_assert_eq!(sb.outside_box(), before);
        let unsafe_name = items.iter().any(|i| name_is_unsafe(i.name()));
        match &result {
            Ok(()) => {
                prop_assert!(!unsafe_name, "an unsafe name was accepted: {:?}", items);
                prop_assert_eq!(sb.box_names(), vec!["dest".to_string()]);
                // Every link that resolves, resolves inside the destination.
                let dest = fs::canonicalize(sb.dest()).unwrap();
                for (rel, node) in snapshot(&sb.dest()) {
                    if let Node::Symlink(target) = node {
                        let target = target.to_string_lossy();
                        prop_assert!(lexical_link_target(&rel, &target).is_some(), "{} -> {} escapes", rel, target);
                        if let Ok(target) = fs::canonicalize(sb.dest().join(&rel)) {
                            prop_assert!(target.starts_with(&dest), "{} -> {}", rel, target.display());
                        }
                    }
                }
            }
            Err(e) => {
                prop_assert!(matches!(e, Error::UnsafeEntry { .. }), "unexpected error {}", e);
                prop_assert!(sb.box_names().is_empty(), "left behind: {:?}", sb.box_names());
            }
        }
    }

    #[test]
    fn safe_plain_archives_round_trip(names in prop::collection::btree_set("[a-c]{1,3}(/[a-c]{1,3}){0,2}", 1..6)) {
        // Files only, at names that never collide with each other's folders: every byte comes back.
        let names: Vec<String> = names.into_iter().map(|n| format!("{n}.f")).collect();
        let files: Vec<(String, Vec<u8>)> =
            names.iter().enumerate().map(|(i, n)| (n.clone(), noise(i * 37, i as u64))).collect();
        let items: Vec<Item> = files.iter().map(|(n, d)| file(n, d)).collect();
        let sb = Sandbox::new();
        let archive = sb.write_archive(&tgz(&items));
        extract_tgz(&archive, &sb.dest()).unwrap();
        assert_tree(&sb.dest(), &files);
    }
}
