//! The served spec against the official DCV Session Manager definition, by machine: every official
//! path, operation, parameter, schema and field is present with a compatible type. Run with
//! `--nocapture` to see the report.

use switchboard_gateway::spec::{ADDITIONS, OFFICIAL, compatibility, merged, parse, served_yaml};

#[test]
fn served_spec_is_compatible_with_the_official_definition() {
    let official = parse(OFFICIAL).unwrap();
    let served = parse(served_yaml().unwrap()).unwrap();
    let report = compatibility(&official, &served);
    println!("compat: served /dcv-session-manager-api.yaml vs official 2023.0: {report}");
    assert!(report.problems.is_empty(), "{report}");
    assert_eq!((report.paths, report.operations), (9, 9), "the nine operations of the contract");
    assert!(report.schemas >= 40 && report.fields >= 150, "{report}");
}

#[test]
fn additions_only_add() {
    // Merging the additions never changes an official value: dropping every key the official file
    // lacks gives the official document back.
    fn restrict(served: &serde_norway::Value, official: &serde_norway::Value) -> serde_norway::Value {
        match (served, official) {
            (serde_norway::Value::Mapping(s), serde_norway::Value::Mapping(o)) => serde_norway::Value::Mapping(
                o.iter()
                    .map(|(k, v)| (k.clone(), s.get(k).map_or(serde_norway::Value::Null, |sv| restrict(sv, v))))
                    .collect(),
            ),
            _ => served.clone(),
        }
    }
    let official = parse(OFFICIAL).unwrap();
    let served = merged().unwrap();
    assert_eq!(restrict(&served, &official), official);
    assert!(ADDITIONS.contains("additionalProperties"), "the additions file is the documented one");
}
