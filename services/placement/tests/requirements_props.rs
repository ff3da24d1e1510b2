//! Property tests of the requirements language: printing and parsing agree,
//! and the real evaluator agrees with a deliberately naive one written here.

use std::cmp::Ordering;

use proptest::prelude::*;
use switchboard_placement::requirements::{
    Comparison, Expr, Literal, MAX_DEPTH, Operand, Operator, Property, Requirements, parse_expression,
};
use switchboard_proto::{AwsInfo, CpuInfo, CpuLoadAverage, HostInfo, KeyValue, MemoryUsage, Os, ServerRecord};

/// Texts shared by tags, properties and literals so comparisons often hit.
const TEXTS: &[&str] =
    &["", "1", "4", "4.0", "16", "1e3", "-2.5", "0.1", "red", "dark-red", "o'neil", "say \"hi\"", "linux", "abc", "Z"];
const KEYS: &[&str] = &["a", "ram_gb", "color", "x.y"];

fn operator() -> impl Strategy<Value = Operator> {
    prop::sample::select(Operator::ALL.to_vec())
}

fn number_text() -> impl Strategy<Value = String> {
    (prop::sample::select(vec!["", "-", "+"]), 0u32..2000, prop::option::of(0u32..100), prop::option::of(-12i32..12))
        .prop_map(|(sign, whole, fraction, exponent)| {
            let fraction = fraction.map(|digits| format!(".{digits}")).unwrap_or_default();
            let exponent = exponent.map(|e| format!("e{e}")).unwrap_or_default();
            format!("{sign}{whole}{fraction}{exponent}")
        })
}

fn literal(texts: impl Strategy<Value = String>) -> impl Strategy<Value = Literal> {
    prop_oneof![texts.prop_map(Literal::string), number_text().prop_map(|text| Literal::number(text).unwrap())]
}

fn operand(keys: impl Strategy<Value = String>) -> impl Strategy<Value = Operand> {
    prop_oneof![keys.prop_map(Operand::Tag), prop::sample::select(Property::ALL.to_vec()).prop_map(Operand::Server)]
}

fn expression(comparison: BoxedStrategy<Comparison>) -> impl Strategy<Value = Expr> {
    comparison.prop_map(Expr::Compare).prop_recursive(6, 48, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::Or),
            prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::And),
            inner.prop_map(|expr| Expr::Not(Box::new(expr))),
        ]
    })
}

/// Any printable comparison: free-form keys and strings.
fn any_comparison() -> BoxedStrategy<Comparison> {
    let keys = "[a-zA-Z_0-9][a-zA-Z0-9_./+-]{0,6}(:[a-z]{1,3})?";
    let texts = "[a-zA-Z0-9 '\"().:=<>!-]{0,8}";
    (operand(keys), operator(), literal(texts))
        .prop_map(|(operand, operator, value)| Comparison { operand, operator, value })
        .boxed()
}

/// Comparisons drawn from the small pools the generated servers use.
fn pooled_comparison() -> BoxedStrategy<Comparison> {
    let keys = prop::sample::select(KEYS).prop_map(str::to_owned);
    let texts = prop::sample::select(TEXTS).prop_map(str::to_owned);
    (operand(keys), operator(), literal(texts))
        .prop_map(|(operand, operator, value)| Comparison { operand, operator, value })
        .boxed()
}

fn text() -> impl Strategy<Value = String> {
    prop::sample::select(TEXTS).prop_map(str::to_owned)
}

fn bytes() -> impl Strategy<Value = u64> {
    prop::sample::select(vec![0, 1, 4, 16, 1000, 1_024_000_000, 16_000_000_000, u64::MAX])
}

fn memory() -> impl Strategy<Value = MemoryUsage> {
    (bytes(), bytes()).prop_map(|(total_bytes, used_bytes)| MemoryUsage { total_bytes, used_bytes })
}

fn load() -> impl Strategy<Value = f32> {
    prop::sample::select(vec![0.0, 0.1, 0.5, 1.25, 4.0, 16.0, 1000.0, f32::NAN])
}

fn server() -> impl Strategy<Value = ServerRecord> {
    let os =
        (text(), text(), text(), text(), text()).prop_map(|(family, name, version, kernel_version, build_number)| Os {
            family,
            name,
            version,
            kernel_version,
            build_number,
        });
    let aws =
        (text(), text(), text(), text()).prop_map(|(region, ec2_instance_type, ec2_instance_id, ec2_image_id)| {
            AwsInfo { region, ec2_instance_type, ec2_instance_id, ec2_image_id }
        });
    let cpu = (text(), text(), text(), 0u32..20, 0u32..20).prop_map(
        |(vendor, model_name, architecture, number_of_cpus, physical_cores_per_cpu)| CpuInfo {
            vendor,
            model_name,
            architecture,
            number_of_cpus,
            physical_cores_per_cpu,
        },
    );
    let loads = (load(), load(), load()).prop_map(|(one_minute, five_minutes, fifteen_minutes)| CpuLoadAverage {
        one_minute,
        five_minutes,
        fifteen_minutes,
    });
    use prop::option::of as option;
    let host = (option(os), option(memory()), option(memory()), option(aws), option(cpu), option(loads)).prop_map(
        |(os, memory, swap, aws, cpu_info, cpu_load_average)| HostInfo {
            os,
            memory,
            swap,
            aws,
            cpu_info,
            cpu_load_average,
            ..Default::default()
        },
    );
    let tag = (prop::sample::select(KEYS), text()).prop_map(|(key, value)| KeyValue { key: key.into(), value });
    (text(), text(), text(), text(), option(host), prop::collection::vec(tag, 0..5)).prop_map(
        |(id, hostname, dcv_version, agent_version, host, tags)| ServerRecord {
            id,
            hostname,
            dcv_version,
            agent_version,
            host,
            tags,
            ..Default::default()
        },
    )
}

/// The naive evaluator: read everything as a `String`, then compare.
fn reference(expression: &Expr, server: &ServerRecord) -> bool {
    match expression {
        Expr::Or(members) => members.iter().any(|member| reference(member, server)),
        Expr::And(members) => members.iter().all(|member| reference(member, server)),
        Expr::Not(inner) => !reference(inner, server),
        Expr::Compare(comparison) => {
            let Some(actual) = reference_value(&comparison.operand, server) else { return false };
            let wanted = comparison.value.text();
            if comparison.operator == Operator::Contains {
                return actual.contains(wanted);
            }
            let ordering = match (reference_number(&actual), reference_number(wanted)) {
                (Some(left), Some(right)) => left.partial_cmp(&right).expect("finite numbers"),
                _ => actual.as_str().cmp(wanted),
            };
            match comparison.operator {
                Operator::Equal => ordering == Ordering::Equal,
                Operator::NotEqual => ordering != Ordering::Equal,
                Operator::Less => ordering == Ordering::Less,
                Operator::LessOrEqual => ordering != Ordering::Greater,
                Operator::Greater => ordering == Ordering::Greater,
                Operator::GreaterOrEqual => ordering != Ordering::Less,
                Operator::Contains => unreachable!(),
            }
        }
    }
}

fn reference_number(text: &str) -> Option<f64> {
    let lower = text.to_ascii_lowercase();
    if lower.contains("inf") || lower.contains("nan") {
        return None;
    }
    text.parse::<f64>().ok().filter(|number| number.is_finite())
}

/// Reads an operand by the property's printed name, independently of the
/// crate's accessor.
fn reference_value(operand: &Operand, server: &ServerRecord) -> Option<String> {
    let property = match operand {
        Operand::Tag(key) => return server.tags.iter().find(|tag| &tag.key == key).map(|tag| tag.value.clone()),
        Operand::Server(property) => property.name(),
    };
    let non_empty = |text: &String| (!text.is_empty()).then(|| text.clone());
    let host = server.host.as_ref();
    match property {
        "Id" => non_empty(&server.id),
        "Hostname" => non_empty(&server.hostname),
        "Version" => non_empty(&server.dcv_version),
        "SessionManagerAgentVersion" => non_empty(&server.agent_version),
        "Host.Os.BuildNumber" => non_empty(&host?.os.as_ref()?.build_number),
        "Host.Os.Family" => non_empty(&host?.os.as_ref()?.family),
        "Host.Os.KernelVersion" => non_empty(&host?.os.as_ref()?.kernel_version),
        "Host.Os.Name" => non_empty(&host?.os.as_ref()?.name),
        "Host.Os.Version" => non_empty(&host?.os.as_ref()?.version),
        "Host.Memory.TotalBytes" => Some(host?.memory.as_ref()?.total_bytes.to_string()),
        "Host.Memory.UsedBytes" => Some(host?.memory.as_ref()?.used_bytes.to_string()),
        "Host.Swap.TotalBytes" => Some(host?.swap.as_ref()?.total_bytes.to_string()),
        "Host.Swap.UsedBytes" => Some(host?.swap.as_ref()?.used_bytes.to_string()),
        "Host.CpuLoadAverage.OneMinute" => Some(host?.cpu_load_average.as_ref()?.one_minute.to_string()),
        "Host.CpuLoadAverage.FiveMinutes" => Some(host?.cpu_load_average.as_ref()?.five_minutes.to_string()),
        "Host.CpuLoadAverage.FifteenMinutes" => Some(host?.cpu_load_average.as_ref()?.fifteen_minutes.to_string()),
        "Host.Aws.Ec2InstanceId" => non_empty(&host?.aws.as_ref()?.ec2_instance_id),
        "Host.Aws.Ec2InstanceType" => non_empty(&host?.aws.as_ref()?.ec2_instance_type),
        "Host.Aws.Region" => non_empty(&host?.aws.as_ref()?.region),
        "Host.Aws.Ec2ImageId" => non_empty(&host?.aws.as_ref()?.ec2_image_id),
        "Host.CpuInfo.Architecture" => non_empty(&host?.cpu_info.as_ref()?.architecture),
        "Host.CpuInfo.ModelName" => non_empty(&host?.cpu_info.as_ref()?.model_name),
        "Host.CpuInfo.NumberOfCpus" => Some(host?.cpu_info.as_ref()?.number_of_cpus.to_string()),
        "Host.CpuInfo.PhysicalCoresPerCpu" => Some(host?.cpu_info.as_ref()?.physical_cores_per_cpu.to_string()),
        "Host.CpuInfo.Vendor" => non_empty(&host?.cpu_info.as_ref()?.vendor),
        other => panic!("the reference does not know server:{other}"),
    }
}

fn depth(expression: &Expr) -> usize {
    match expression {
        Expr::Or(members) | Expr::And(members) => members.iter().map(depth).max().unwrap_or(0) + 1,
        Expr::Not(inner) => depth(inner) + 1,
        Expr::Compare(_) => 0,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn printing_then_parsing_gives_the_same_tree(expression in expression(any_comparison())) {
        prop_assume!(depth(&expression) <= MAX_DEPTH / 2);
        let printed = expression.to_string();
        let parsed = parse_expression(&printed).map_err(|error| TestCaseError::fail(format!("{printed}: {error}")))?;
        prop_assert_eq!(parsed.as_ref(), Some(&expression), "printed as {}", printed);
    }

    #[test]
    fn the_evaluator_agrees_with_the_reference(
        expression in expression(pooled_comparison()),
        servers in prop::collection::vec(server(), 1..6),
    ) {
        let printed = expression.to_string();
        let requirements = Requirements::parse(&printed).map_err(TestCaseError::fail)?;
        for server in &servers {
            prop_assert_eq!(requirements.matches(server), reference(&expression, server), "{} on {:?}", printed, server);
        }
    }

    #[test]
    fn arbitrary_text_never_panics(text in "[ -~é]{0,64}") {
        if let Ok(Some(expression)) = parse_expression(&text) {
            let printed = expression.to_string();
            prop_assert_eq!(parse_expression(&printed).ok().flatten(), Some(expression));
        }
    }
}
