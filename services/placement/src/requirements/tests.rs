//! Behaviour of the language as the module documentation describes it.

use switchboard_proto::{AwsInfo, CpuInfo, CpuLoadAverage, HostInfo, KeyValue, MemoryUsage, Os, ServerRecord};

use super::*;

/// A server with every property set and a few tags.
fn full_server() -> ServerRecord {
    ServerRecord {
        id: "server-1".into(),
        hostname: "gpu-host.example".into(),
        dcv_version: "2024.0.17979".into(),
        agent_version: "2024.0.781".into(),
        host: Some(HostInfo {
            os: Some(Os {
                family: "linux".into(),
                name: "Ubuntu".into(),
                version: "22.04".into(),
                kernel_version: "5.15.0-1051-aws".into(),
                build_number: "20348".into(),
            }),
            memory: Some(MemoryUsage { total_bytes: 16_000_000_000, used_bytes: 4_000_000_000 }),
            swap: Some(MemoryUsage { total_bytes: 2_000_000_000, used_bytes: 1_000 }),
            aws: Some(AwsInfo {
                region: "eu-west-1".into(),
                ec2_instance_type: "g4dn.xlarge".into(),
                ec2_instance_id: "i-0abc".into(),
                ec2_image_id: "ami-0def".into(),
            }),
            cpu_info: Some(CpuInfo {
                vendor: "GenuineIntel".into(),
                model_name: "Intel(R) Xeon(R) Platinum 8259CL".into(),
                architecture: "x86_64".into(),
                number_of_cpus: 4,
                physical_cores_per_cpu: 2,
            }),
            cpu_load_average: Some(CpuLoadAverage { one_minute: 0.5, five_minutes: 1.25, fifteen_minutes: 2.0 }),
            ..Default::default()
        }),
        tags: tags(&[("color", "dark-red"), ("ram_gb", "4"), ("software", "my software"), ("irish_name", "o'neil")]),
        ..Default::default()
    }
}

fn tags(pairs: &[(&str, &str)]) -> Vec<KeyValue> {
    pairs.iter().map(|(key, value)| KeyValue { key: (*key).into(), value: (*value).into() }).collect()
}

fn matches(text: &str, server: &ServerRecord) -> bool {
    Requirements::parse(text).unwrap_or_else(|error| panic!("{text}: {error}")).matches(server)
}

fn error(text: &str) -> String {
    Requirements::parse(text).expect_err(text)
}

#[test]
fn the_guides_and_the_yamls_examples() {
    let server = full_server();
    let mut pink = server.clone();
    pink.tags = tags(&[("color", "pink")]);
    let example = "tag:color = 'pink' and (server:Host.Os.Family = 'windows' or tag:color := 'red')";
    assert!(!matches(example, &pink), "pink but linux and not red");
    pink.host.as_mut().unwrap().os.as_mut().unwrap().family = "windows".into();
    assert!(matches(example, &pink));
    assert!(matches(
        "\"server:Host.Aws.Ec2InstanceType := 'g4dn' and server:Host.CpuInfo.NumberOfCpus >= 2\"",
        &server
    ));
    assert!(matches("\"server:Host.Memory.TotalBytes > 1024E6\"", &server));
    assert!(matches("ram_gb = '4' and software='my software'", &server));
    assert!(matches("irish_name='o''neil'", &server));
}

#[test]
fn the_broker_reserved_tags_are_tags_like_any_other() {
    // session-store adds `dcv:os-family` and `dcv:max-virtual-sessions` to every connected server's tags.
    let mut server = full_server();
    server.tags = tags(&[("color", "pink"), ("dcv:os-family", "windows"), ("dcv:max-virtual-sessions", "0")]);
    assert!(matches("tag:dcv:os-family = 'windows' and tag:dcv:max-virtual-sessions = 0", &server));
    assert!(error("dcv:os-family = 'windows'").contains("unknown prefix 'dcv:'"), "the bare form names a prefix");
    assert!(!matches("tag:dcv:os-family = 'linux'", &server));
    assert!(matches("tag:dcv:os-family:='win'", &server), "`:=` right after the key still splits");
}

#[test]
fn every_operator_on_numbers_and_text() {
    let server = full_server();
    let cases = [
        ("server:Host.CpuInfo.NumberOfCpus = 4", true),
        ("server:Host.CpuInfo.NumberOfCpus = 5", false),
        ("server:Host.CpuInfo.NumberOfCpus != 5", true),
        ("server:Host.CpuInfo.NumberOfCpus != 4", false),
        ("server:Host.CpuInfo.NumberOfCpus < 10", true),
        ("server:Host.CpuInfo.NumberOfCpus < 4", false),
        ("server:Host.CpuInfo.NumberOfCpus <= 4", true),
        ("server:Host.CpuInfo.NumberOfCpus <= 3", false),
        ("server:Host.CpuInfo.NumberOfCpus > 3", true),
        ("server:Host.CpuInfo.NumberOfCpus > 4", false),
        ("server:Host.CpuInfo.NumberOfCpus >= 4", true),
        ("server:Host.CpuInfo.NumberOfCpus >= 4.5", false),
        ("server:Host.CpuInfo.NumberOfCpus := '4'", true),
        ("server:Host.CpuInfo.NumberOfCpus := '8'", false),
        ("tag:color = 'dark-red'", true),
        ("tag:color != 'dark-red'", false),
        ("tag:color < 'e'", true),
        ("tag:color <= 'dark-red'", true),
        ("tag:color > 'dark'", true),
        ("tag:color >= 'e'", false),
        ("tag:color := 'red'", true),
        ("tag:color := 'blue'", false),
        ("tag:color := 'Red'", false),
    ];
    for (text, expected) in cases {
        assert_eq!(matches(text, &server), expected, "{text}");
    }
}

#[test]
fn numbers_compare_as_numbers_when_both_sides_are_numbers() {
    let mut server = full_server();
    server.tags = tags(&[("ram_gb", "16"), ("version", "2.0"), ("label", "9x")]);
    assert!(matches("ram_gb > 9", &server), "16 > 9 numerically, although '16' < '9' as text");
    assert!(matches("ram_gb > '9'", &server), "a quoted number is a number");
    assert!(matches("version = 2", &server));
    assert!(matches("version = '2e0'", &server));
    assert!(matches("label > '10'", &server), "text comparison: '9x' > '10'");
    assert!(matches("server:Host.Memory.TotalBytes > 1024E6 and server:Host.Memory.TotalBytes < 1.7e10", &server));
    let load = "server:Host.CpuLoadAverage.OneMinute";
    assert!(!matches(&format!("{load} < 1.5e-0 and {load} > 5e-1 or server:Id = 'x'"), &server));
    assert!(matches("server:Host.CpuLoadAverage.OneMinute >= 5e-1", &server));
    assert!(matches("server:Host.Os.Version >= 20.04", &server));
    assert!(matches("server:Host.Swap.UsedBytes = -1 or server:Host.Swap.UsedBytes = +1000", &server));
}

#[test]
fn every_property_reads_its_field() {
    let server = full_server();
    let expected = [
        (Property::Id, "'server-1'"),
        (Property::Hostname, "'gpu-host.example'"),
        (Property::Version, "'2024.0.17979'"),
        (Property::SessionManagerAgentVersion, "'2024.0.781'"),
        (Property::OsBuildNumber, "20348"),
        (Property::OsFamily, "'linux'"),
        (Property::OsKernelVersion, "'5.15.0-1051-aws'"),
        (Property::OsName, "'Ubuntu'"),
        (Property::OsVersion, "22.04"),
        (Property::MemoryTotalBytes, "16e9"),
        (Property::MemoryUsedBytes, "4000000000"),
        (Property::SwapTotalBytes, "2E9"),
        (Property::SwapUsedBytes, "1000"),
        (Property::LoadOneMinute, "0.5"),
        (Property::LoadFiveMinutes, "1.25"),
        (Property::LoadFifteenMinutes, "2"),
        (Property::AwsEc2InstanceId, "'i-0abc'"),
        (Property::AwsEc2InstanceType, "'g4dn.xlarge'"),
        (Property::AwsRegion, "'eu-west-1'"),
        (Property::AwsEc2ImageId, "'ami-0def'"),
        (Property::CpuArchitecture, "'x86_64'"),
        (Property::CpuModelName, "'Intel(R) Xeon(R) Platinum 8259CL'"),
        (Property::CpuNumberOfCpus, "4"),
        (Property::CpuPhysicalCoresPerCpu, "2"),
        (Property::CpuVendor, "'GenuineIntel'"),
    ];
    assert_eq!(expected.len(), Property::ALL.len());
    for (property, value) in expected {
        let name = property.name();
        assert!(matches(&format!("server:{name} = {value}"), &server), "{name} = {value}");
        assert!(!matches(&format!("server:{name} != {value}"), &server), "{name} != {value}");
        assert!(!matches(&format!("server:{name} = 'something else'"), &server), "{name}");
    }
    assert!(matches("server:Host.Aws.EC2InstanceType = 'g4dn.xlarge'", &server), "the API's JSON spelling");
    assert!(matches("server:Host.CpuInfo.PhysicalCorePerCpu = 2", &server), "the guide's other spelling");
    assert!(matches("SERVER:host.os.family = 'linux'", &server));
}

#[test]
fn missing_tags_and_properties_fail_every_comparison() {
    let mut server = full_server();
    server.host.as_mut().unwrap().aws = None;
    server.host.as_mut().unwrap().os.as_mut().unwrap().build_number.clear();
    for operator in Operator::ALL.map(Operator::symbol) {
        for operand in ["tag:gpu", "server:Host.Aws.Region", "server:Host.Os.BuildNumber"] {
            let text = format!("{operand} {operator} 'x'");
            assert!(!matches(&text, &server), "{text}");
            assert!(matches(&format!("not {text}"), &server), "not {text}");
        }
    }
    server.host = None;
    assert!(!matches("server:Host.Memory.TotalBytes >= 0", &server));
    assert!(!matches("server:Host.CpuInfo.Vendor := ''", &server));
    assert!(matches("server:Id = 'server-1'", &server), "top-level properties need no host telemetry");
}

#[test]
fn precedence_is_not_then_and_then_or() {
    let server = full_server();
    // or binds loosest: true or (false and false).
    assert!(matches("tag:ram_gb = 4 or tag:color = 'x' and tag:color = 'y'", &server));
    assert!(!matches("(tag:ram_gb = 4 or tag:color = 'x') and tag:color = 'y'", &server));
    // not binds tightest: (not true) or true.
    assert!(matches("not tag:ram_gb = 4 or tag:ram_gb = 4", &server));
    assert!(!matches("not (tag:ram_gb = 4 or tag:ram_gb = 4)", &server));
    assert!(matches("not not tag:ram_gb = 4", &server));
    let parsed = parse_expression("not a = '1' and b = '2' or c = '3'").unwrap().unwrap();
    assert_eq!(parsed.to_string(), "not tag:a = '1' and tag:b = '2' or tag:c = '3'");
    let Expr::Or(members) = &parsed else { panic!("{parsed:?}") };
    let Expr::And(conjuncts) = &members[0] else { panic!("{parsed:?}") };
    assert!(matches!(conjuncts[0], Expr::Not(_)));
}

#[test]
fn keywords_ignore_case_and_parentheses_group() {
    let server = full_server();
    assert!(matches("NOT tag:color = 'x' AnD (tag:ram_gb = 3 Or tag:ram_gb = 4)", &server));
    assert!(matches("((((tag:ram_gb = 4))))", &server));
    assert!(matches("tag:color:='red'", &server), "no spaces needed around :=");
    assert!(matches("tag:and = 'x' or tag:ram_gb>=4", &server), "a keyword key takes the prefix");
}

#[test]
fn strings_escape_doubled_quotes_in_both_styles() {
    let mut server = full_server();
    server.tags = tags(&[("quote", "say \"hi\" o'neil"), ("empty", "")]);
    assert!(matches("quote = 'say \"hi\" o''neil'", &server));
    assert!(matches("quote = \"say \"\"hi\"\" o'neil\"", &server));
    assert!(matches("tag:empty = ''", &server), "an empty tag value is still present");
    assert!(matches("tag:quote := ''", &server));
}

#[test]
fn empty_expressions_match_everything() {
    for text in ["", "   ", "\"\""] {
        let requirements = Requirements::parse(text).unwrap();
        assert!(requirements.expression().is_none());
        assert!(requirements.matches(&ServerRecord::default()));
    }
    assert!(Requirements::default().matches(&full_server()));
}

#[test]
fn errors_name_the_column_and_what_was_expected() {
    let cases = [
        (
            "tag:color = ",
            "requirements: column 13: expected a value (a quoted string or a number) after '=', found end of input",
        ),
        (
            "tag:os = linux",
            "requirements: column 10: expected a value after '=', found 'linux'; write a string in quotes: 'linux'",
        ),
        (
            "tag:os 'linux'",
            "requirements: column 8: expected a comparison operator (=, !=, <, <=, >, >=, :=) after 'tag:os', found the string 'linux'",
        ),
        ("a = '1' b = '2'", "requirements: column 9: expected 'and', 'or' or the end of the expression, found 'b'"),
        (
            "a = '1' and",
            "requirements: column 12: expected a tag (tag:KEY), a server property (server:NAME), 'not' or '(', found end of input",
        ),
        (
            "(a = '1' or b = '2'",
            "requirements: column 20: expected ')' to close the '(' at column 1, found end of input",
        ),
        ("a = '1')", "requirements: column 8: unexpected ')' without a matching '('"),
        (
            "()",
            "requirements: column 2: expected a tag (tag:KEY), a server property (server:NAME), 'not' or '(', found ')'",
        ),
        ("a = 1.2.3", "requirements: column 5: '1.2.3' is not a valid number; write a string in quotes: '1.2.3'"),
        ("a = 1e999", "requirements: column 5: '1e999' is not a valid number; write a string in quotes: '1e999'"),
        (
            "2 < server:Id",
            "requirements: column 5: expected a value after '<', found 'server:Id'; a comparison takes a tag or server property on the left and a quoted string or a number on the right",
        ),
        ("tag: = 'x'", "requirements: column 1: expected a tag key after 'tag:'"),
        (
            "gpu:model = 'x'",
            "requirements: column 1: unknown prefix 'gpu:'; tag keys are prefixed by 'tag:' and server properties by 'server:'",
        ),
        (
            "'x' = tag:a",
            "requirements: column 1: expected a tag (tag:KEY), a server property (server:NAME), 'not' or '(', found the string 'x'",
        ),
        ("a = 'x' || b = 'y'", "requirements: column 9: unexpected character '|'; use 'or'"),
        (
            "a = 'x' and b = 'y",
            "requirements: column 17: unterminated string: add the closing ' (write '' for a ' inside it)",
        ),
        (
            "\"a = 'x' and b = \"",
            "requirements: column 18: expected a value (a quoted string or a number) after '=', found end of input",
        ),
        (
            "é = 'x' and ü",
            "requirements: column 14: expected a comparison operator (=, !=, <, <=, >, >=, :=) after 'ü', found end of input",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(error(text), expected, "{text}");
    }
    let unknown = error("server:Host.Gpus = 1");
    assert!(
        unknown.starts_with(
            "requirements: column 1: unknown server property 'Host.Gpus'; known properties: Id, Hostname,"
        )
    );
    assert!(unknown.ends_with("Host.CpuInfo.Vendor"), "{unknown}");
}

#[test]
fn length_and_depth_are_bounded() {
    let long = format!("a = '{}'", "v".repeat(MAX_CHARS));
    assert_eq!(
        error(&long),
        format!("requirements: the expression is {} characters long; at most 4096 are accepted", MAX_CHARS + 6)
    );
    let at_limit = format!("a = '{}'", "v".repeat(MAX_CHARS - 6));
    assert!(Requirements::parse(&at_limit).is_ok());

    let nested = |depth: usize| format!("{}a = '1'{}", "(".repeat(depth), ")".repeat(depth));
    assert!(matches(&nested(MAX_DEPTH), &tags_server(&[("a", "1")])));
    assert_eq!(
        error(&nested(MAX_DEPTH + 1)),
        "requirements: column 33: expression nests more than 32 levels of '(' and 'not'"
    );
    let negations = format!("{}a = '1'", "not ".repeat(MAX_DEPTH + 1));
    assert_eq!(error(&negations), "requirements: column 129: expression nests more than 32 levels of '(' and 'not'");
    let wide = vec!["a = '1'"; 300].join(" and ");
    assert!(matches(&wide, &tags_server(&[("a", "1")])), "long and/or chains are not nesting");
}

fn tags_server(pairs: &[(&str, &str)]) -> ServerRecord {
    ServerRecord { tags: tags(pairs), ..Default::default() }
}

#[test]
fn compiled_expressions_are_cached_by_text() {
    let text = "tag:cached = 'yes' and server:Host.CpuInfo.NumberOfCpus >= 1";
    let first = Requirements::parse(text).unwrap();
    let second = Requirements::parse(text).unwrap();
    assert!(Arc::ptr_eq(first.expression.as_ref().unwrap(), second.expression.as_ref().unwrap()));
    assert_eq!(first, second);
}

#[test]
fn first_tag_with_the_key_wins() {
    let server = tags_server(&[("a", "1"), ("a", "2")]);
    assert!(matches("a = 1", &server));
    assert!(!matches("a = 2", &server));
}

#[test]
fn failing_clause_names_the_first_unmet_conjunct() {
    let server = tags_server(&[("gpu", "t4"), ("os", "linux")]);
    let requirements = Requirements::parse("tag:os = 'linux' and tag:gpu = 'a100' and tag:x = '1'").unwrap();
    assert_eq!(requirements.failing_clause(&server), Some(1));
    assert_eq!(requirements.clauses()[1].to_string(), "tag:gpu = 'a100'");
    let either = Requirements::parse("tag:gpu = 'a100' or tag:gpu = 'h100'").unwrap();
    assert_eq!(either.failing_clause(&server), Some(0), "a non-`and` expression is one clause");
    assert_eq!(Requirements::parse("tag:gpu = 't4'").unwrap().failing_clause(&server), None);
    assert_eq!(Requirements::parse("").unwrap().failing_clause(&server), None, "empty matches");
    assert_eq!(
        Requirements::parse("GPU=\"a100\"").unwrap().canonical(),
        Requirements::parse("tag:GPU = 'a100'").unwrap().canonical(),
        "canonical text ignores spelling"
    );
}
