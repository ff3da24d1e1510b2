//! Fuzzes the requirements parser with arbitrary text: it must never panic,
//! every accepted expression must print to text that parses back to the same
//! tree (unless that text is over the length limit), and evaluating it must
//! not panic either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_placement::requirements::{MAX_CHARS, Requirements, parse_expression};
use switchboard_proto::{HostInfo, KeyValue, ServerRecord};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(Some(expression)) = parse_expression(text) else { return };
    let printed = expression.to_string();
    match parse_expression(&printed) {
        Ok(reparsed) => assert_eq!(reparsed.as_ref(), Some(&expression), "{printed:?}"),
        // Canonical text may be longer than the input (`tag:` on bare keys,
        // `''` for each `'` of a double-quoted string) and so over the limit.
        Err(error) if error.column.is_none() && printed.chars().count() > MAX_CHARS => {}
        Err(error) => panic!("{printed:?} does not parse: {error}"),
    }
    let server = ServerRecord {
        id: "1".into(),
        host: Some(HostInfo::default()),
        tags: vec![KeyValue { key: "a".into(), value: "1".into() }],
        ..Default::default()
    };
    let requirements = Requirements::parse(text).expect("parsed once already");
    let _ = requirements.matches(&server);
});
